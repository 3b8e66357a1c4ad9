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
# shellcheck source=scripts/apt-lib.sh
source "$(dirname "$0")/apt-lib.sh"

have_nats() { command -v nats-server >/dev/null 2>&1 || [ -x /usr/bin/nats-server ] || [ -x /usr/sbin/nats-server ]; }

if have_nats; then
    say "nats-server present: $(nats-server --version 2>/dev/null | head -n1)"
    exit 0
fi

if ! can_apt; then
    say "nats-server is not installed and cannot be installed here (need root and apt-get);" \
        "the NATS tests and the pipeline benchmark will be reported as skipped"
    exit 0
fi

deny_service_starts scripts/setup-nats.sh
say "installing nats-server"
log=/tmp/setup-nats-apt.log
apt_install "$log" nats-server
if have_nats; then
    say "installed: $(nats-server --version 2>/dev/null | head -n1)"
else
    say "could not install nats-server (see $log); the NATS tests and the pipeline benchmark will be skipped"
    tail -n 5 "$log" 2>/dev/null | sed 's/^/setup-nats:   /'
fi
exit 0
