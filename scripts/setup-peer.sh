#!/usr/bin/env bash
# Install the benchmark's real-world peers, syslog-ng and rsyslog, and util-linux's `logger` (a
# real syslog client the tests send with), when they are missing, without leaving a system log
# service behind and without ever removing one. Idempotent. Always exits 0: a peer that cannot be
# had (not root, no apt, apt fails) is said here, and the bench and the tests report it as
# unavailable, with the reason.
#
# Debian's syslog-ng-core and rsyslog conflict (both provide system-log-daemon): installing one
# with apt removes the other, which may be the machine's system logger. So the one the machine
# already has is left as it is (and when it has neither, syslog-ng-core is installed normally,
# unless apt would have to remove another system logger for it: apt runs with --no-remove);
# the other is unpacked from its .deb (apt-get download, dpkg -x) into a private directory,
# $LOGLAB_PEERS_DIR/PACKAGE (default /opt/loglab/peers/PACKAGE), with its libraries installed
# normally. benchmarks/peers/ finds it there and gives its module path on its command line.
#
# loglab never uses a system instance: benchmarks/peers/ runs its own daemon in the foreground
# with a generated config, pid file and sockets in a temp directory.
set -uo pipefail

say() { echo "setup-peer: $*"; }
# shellcheck source=scripts/apt-lib.sh
source "$(dirname "$0")/apt-lib.sh"

PEERS_DIR=${LOGLAB_PEERS_DIR:-/opt/loglab/peers}

# stop_system_service SERVICE COMM PIDFILE...: right after our install, stop a system instance
# that the package's maintainer scripts may have started despite policy-rc.d, and keep it from
# starting at boot. Only the service's own pid file / service manager, never a broad kill by
# process name (our own benchmark instances run with other pid files).
stop_system_service() {
    local service=$1 comm=$2
    shift 2
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl stop "$service.service" >/dev/null 2>&1 || true
        systemctl disable "$service.service" >/dev/null 2>&1 || true
    fi
    if [ -x "/etc/init.d/$service" ]; then
        # sysvinit: stop it and drop the boot links (the script stays, harmless).
        "/etc/init.d/$service" stop >/dev/null 2>&1 || true
        command -v update-rc.d >/dev/null && update-rc.d "$service" disable >/dev/null 2>&1 || true
    fi
    local pf pid
    for pf in "$@"; do
        [ -s "$pf" ] || continue
        pid=$(cat "$pf" 2>/dev/null || true)
        if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$comm" ]; then
            say "stopping system $service (pid $pid from $pf)"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

# syslog-ng says its version with --version, rsyslogd with -v (which to syslog-ng is --verbose).
version_of() {
    case "$1" in
        *rsyslogd) "$1" -v 2>/dev/null | head -n1 | sed -e "s/, compiled with://" -e "s/ compiled with://" ;;
        *) "$1" --version 2>/dev/null | head -n1 ;;
    esac
}

package_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# unpack_peer PACKAGE BINARY: the .deb's files under $PEERS_DIR/PACKAGE (nothing of it is
# registered with dpkg, so it conflicts with nothing), its dependencies installed normally.
unpack_peer() {
    local package=$1 binary=$2 dest="$PEERS_DIR/$1" log="/tmp/setup-peer-$1.log" tmp deb deps
    if [ -x "$dest$binary" ]; then
        say "$package present, unpacked in $dest ($(version_of "$dest$binary"))"
        return 0
    fi
    tmp=$(mktemp -d)
    # apt-get download writes into the current directory, as the _apt user when it can.
    chmod 755 "$tmp"
    if ! (cd "$tmp" && apt-get download -qq "$package" >"$log" 2>&1); then
        apt-get update -qq >>"$log" 2>&1
        (cd "$tmp" && apt-get download -qq "$package" >>"$log" 2>&1)
    fi
    deb=$(ls "$tmp"/*.deb 2>/dev/null | head -n1)
    if [ -z "$deb" ]; then
        say "could not download $package (see $log); the $package peer will be reported as unavailable"
        rm -rf "$tmp"
        return 0
    fi
    # Its libraries, normally: the first of each set of alternatives, without version constraints.
    deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g' | grep -v '^$')
    # shellcheck disable=SC2086
    if ! apt_install "$log" $deps; then
        say "could not install the libraries $package needs (see $log); the $package peer will be reported as unavailable"
        rm -rf "$tmp"
        return 0
    fi
    mkdir -p "$dest.new"
    dpkg -x "$deb" "$dest.new" && rm -rf "$dest" && mv "$dest.new" "$dest"
    rm -rf "$tmp" "$dest.new"
    if [ -x "$dest$binary" ]; then
        say "unpacked $package into $dest (its conflict with the installed syslog daemon leaves it out of dpkg)"
    else
        say "unpacking $package failed; the $package peer will be reported as unavailable"
    fi
}

# install_peer PACKAGE BINARY SERVICE COMM CONFLICTING PIDFILE...
install_peer() {
    local package=$1 binary=$2 service=$3 comm=$4 conflicting=$5
    shift 5
    if [ -x "$binary" ]; then
        # Already installed: leave any system service alone (it may be this machine's logger; it
        # shares no path, port or file with our instances). Just say so.
        say "$package present: $(version_of "$binary")"
        return 0
    fi
    if ! can_apt; then
        if [ -x "$PEERS_DIR/$package$binary" ]; then
            say "$package present, unpacked in $PEERS_DIR/$package"
        else
            say "$package is not installed and cannot be installed here (need root and apt-get);" \
                "the $package peer will be reported as unavailable"
        fi
        return 0
    fi
    if package_installed "$conflicting"; then
        unpack_peer "$package" "$binary"
        return 0
    fi
    say "installing $package"
    if apt_install "/tmp/setup-peer-$package.log" "$package"; then
        stop_system_service "$service" "$comm" "$@"
    elif grep -qi "remove" "/tmp/setup-peer-$package.log"; then
        # apt would have had to remove a package (another system-log-daemon: the machine's logger,
        # whichever it is) and --no-remove refused: unpack it beside it instead.
        say "installing $package would remove a package this machine has (see /tmp/setup-peer-$package.log); unpacking it instead"
        unpack_peer "$package" "$binary"
        return 0
    fi
    if [ -x "$binary" ]; then
        say "installed: $package"
    else
        say "could not install $package (see /tmp/setup-peer-$package.log); the $package peer will be reported as unavailable"
        tail -n 5 "/tmp/setup-peer-$package.log" 2>/dev/null | sed 's/^/setup-peer:   /'
    fi
}

can_apt && deny_service_starts scripts/setup-peer.sh

# syslog-ng first: with neither installed it is the one installed normally (as before rsyslog
# joined), and rsyslog is then unpacked beside it.
install_peer syslog-ng-core /usr/sbin/syslog-ng syslog-ng syslog-ng rsyslog /run/syslog-ng.pid /var/run/syslog-ng.pid
install_peer rsyslog /usr/sbin/rsyslogd rsyslog rsyslogd syslog-ng-core /run/rsyslogd.pid /var/run/rsyslogd.pid

# util-linux's logger (Debian's bsdutils): the tests send with it as a real client.
if command -v logger >/dev/null 2>&1; then
    say "logger present: $(logger --version 2>/dev/null | head -n1)"
elif can_apt; then
    say "installing bsdutils (util-linux logger)"
    apt_install /tmp/setup-peer-bsdutils.log bsdutils || say "could not install bsdutils; the logger tests will be skipped"
else
    say "logger is not installed (need root and apt-get to install bsdutils); the logger tests will be skipped"
fi
exit 0
