# Sourced by the setup scripts: installing the lab's Debian packages the way loglab must.
# shellcheck shell=bash

# Root and apt-get here: the only case in which setup installs anything.
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

# deny_service_starts WHO: until the calling script exits, a policy-rc.d denies every service
# start (invoke-rc.d honours it), so installing a daemon's package does not start the system's
# instance of it. Added only if the machine has none; removed at exit.
deny_service_starts() {
    LOGLAB_ADDED_POLICY=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# temporary, from loglab %s\nexit 101\n' "$1" > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        LOGLAB_ADDED_POLICY=1
    fi
    trap '[ "$LOGLAB_ADDED_POLICY" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
}

# apt_install LOG PACKAGE...: without recommends and without removing anything (--no-remove:
# syslog-ng-core and rsyslog conflict, and setup must never take away the machine's logger);
# if it fails, update the package lists once and retry. apt's output goes to LOG.
apt_install() {
    local log=$1
    shift
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends --no-remove "$@" >"$log" 2>&1 && return 0
    apt-get update -qq >>"$log" 2>&1 && apt-get install -y -qq --no-install-recommends --no-remove "$@" >>"$log" 2>&1
}
