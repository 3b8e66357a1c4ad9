#!/usr/bin/env bash
# Install syslog-ng (the benchmark's real-world peer) when it is missing, without leaving a
# system syslog-ng service behind. Idempotent. Always exits 0: if syslog-ng cannot be had
# (not root, no apt, apt fails, it would have to remove another syslog daemon) it says why and
# the benchmark/tests report the peer as unavailable.
#
# loglab never uses the system instance: benchmarks/peers/syslog_ng.py runs its own
# `syslog-ng -F` with its own config, pid file, control socket and persist file in a temp dir.
set -uo pipefail

say() { echo "setup-peer: $*"; }
# shellcheck source=scripts/apt-lib.sh
source "$(dirname "$0")/apt-lib.sh"

# Right after our install: stop a system syslog-ng that the package's maintainer scripts may have
# started despite policy-rc.d, and keep it from starting at boot. Only touches the service's own
# pid file / service manager, never a broad process-name kill (our own benchmark instances run
# with other pid files).
stop_system_service() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl stop syslog-ng.service >/dev/null 2>&1 || true
        systemctl disable syslog-ng.service >/dev/null 2>&1 || true
    fi
    if [ -x /etc/init.d/syslog-ng ]; then
        # sysvinit: stop it and drop the boot links (the script stays, harmless).
        /etc/init.d/syslog-ng stop >/dev/null 2>&1 || true
        command -v update-rc.d >/dev/null && update-rc.d syslog-ng disable >/dev/null 2>&1 || true
    fi
    local pf
    for pf in /run/syslog-ng.pid /var/run/syslog-ng.pid; do
        if [ -s "$pf" ]; then
            local pid
            pid=$(cat "$pf" 2>/dev/null || true)
            if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = syslog-ng ]; then
                say "stopping system syslog-ng (pid $pid from $pf)"
                kill -TERM "$pid" 2>/dev/null || true
                for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    done
}

have_syslog_ng() { command -v syslog-ng >/dev/null 2>&1 || [ -x /usr/sbin/syslog-ng ]; }

if have_syslog_ng; then
    # Already installed: leave any system service alone (it may be this machine's logger; it
    # does not share a path, port or file with our instances). Just say so.
    say "syslog-ng present: $(PATH=$PATH:/usr/sbin syslog-ng --version 2>/dev/null | head -n1)"
    for pf in /run/syslog-ng.pid /var/run/syslog-ng.pid; do
        [ -s "$pf" ] && kill -0 "$(cat "$pf")" 2>/dev/null && \
            say "note: a system syslog-ng runs (pid $(cat "$pf")); loglab does not use it"
    done
    exit 0
fi

if ! can_apt; then
    say "syslog-ng is not installed and cannot be installed here (need root and apt-get);" \
        "the syslog-ng peer will be reported as unavailable"
    exit 0
fi

deny_service_starts scripts/setup-peer.sh
say "installing syslog-ng-core"
apt_ok=0
apt_install /tmp/setup-peer-apt.log syslog-ng-core && apt_ok=1
[ "$apt_ok" = 1 ] && stop_system_service

if [ "$apt_ok" = 1 ] && have_syslog_ng; then
    say "installed: $(PATH=$PATH:/usr/sbin syslog-ng --version 2>/dev/null | head -n1)"
else
    say "could not install syslog-ng-core (see /tmp/setup-peer-apt.log; it conflicts with" \
        "rsyslog and other syslog daemons); the syslog-ng peer will be reported as unavailable"
    tail -n 5 /tmp/setup-peer-apt.log 2>/dev/null | sed 's/^/setup-peer:   /'
fi
exit 0
