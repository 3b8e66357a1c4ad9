#!/usr/bin/env bash
# Install Debian's nats-server (the JetStream engine the shipper publishes to) when it is missing.
# Idempotent. Always exits 0: if nats-server cannot be had (not root, no apt, apt fails) it says
# why, and the NATS tests and the pipeline benchmark report themselves as skipped with that reason.
#
# loglab never uses a system service: natslab/ runs its own `nats-server -c GENERATED.conf` with a
# private store directory on free ports. The package ships no service that starts by itself on
# Debian 12, but a policy-rc.d is put in place during the install all the same (as setup-peer.sh).
set -uo pipefail

say() { echo "setup-nats: $*"; }

have_nats() { command -v nats-server >/dev/null 2>&1 || [ -x /usr/bin/nats-server ] || [ -x /usr/sbin/nats-server ]; }

if have_nats; then
    say "nats-server present: $(nats-server --version 2>/dev/null | head -n1)"
    exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "nats-server is not installed and cannot be installed here (need root and apt-get);" \
        "the NATS tests and the pipeline benchmark will be reported as skipped"
    exit 0
fi

added_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from loglab scripts/setup-nats.sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
fi
cleanup() { [ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; }
trap cleanup EXIT

say "installing nats-server"
export DEBIAN_FRONTEND=noninteractive
log=/tmp/setup-nats-apt.log
if ! apt-get install -y -qq --no-install-recommends nats-server >"$log" 2>&1; then
    # The package lists may be missing or stale: update once and retry.
    apt-get update -qq >>"$log" 2>&1 && apt-get install -y -qq --no-install-recommends nats-server >>"$log" 2>&1
fi
if have_nats; then
    say "installed: $(nats-server --version 2>/dev/null | head -n1)"
else
    say "could not install nats-server (see $log); the NATS tests and the pipeline benchmark will be skipped"
    tail -n 5 "$log" 2>/dev/null | sed 's/^/setup-nats:   /'
fi
exit 0
