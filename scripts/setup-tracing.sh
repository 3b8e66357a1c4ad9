#!/usr/bin/env bash
# setup-tracing.sh   Install what loglab's eBPF tracing needs: bpftrace, bcc (Debian's
#                    python3-bpfcc) and kernel headers for the running kernel (bcc compiles its C
#                    at run time). Idempotent: checks first, touches apt only for what is missing.
#
# USAGE: scripts/setup-tracing.sh [--check]
#    --check   only report what is present or missing; install nothing (exit 1 if incomplete)
#
# Headers: tries the distro package for the running kernel (linux-headers-$(uname -r)) first. When
# there is none (a custom/micro-VM kernel), installs Debian's generic headers (linux-headers-ARCH)
# and links them as /lib/modules/$(uname -r)/{build,source}. That is enough for bcc tracepoint
# programs: their argument structs come from the tracepoint format files, not from the headers.
# Tracefs: mounted at /sys/kernel/tracing if missing (some micro-VMs boot without it).
#
# Not root: says what is missing and exits 0 (benchmarks still run; reports say tracing was
# skipped and why). Root: exits non-zero only if an install really failed.
set -euo pipefail

check_only=0
[ "${1:-}" = "--check" ] && check_only=1

kver="$(uname -r)"
moddir="/lib/modules/$kver"
system_python=/usr/bin/python3

say() { echo "setup-tracing: $*"; }

have_bpftrace() { command -v bpftrace >/dev/null 2>&1; }
have_bcc() { [ -x "$system_python" ] && "$system_python" -I -c 'import bcc' >/dev/null 2>&1; }
# Tracepoints are found through tracefs; some VMs boot without it mounted.
have_tracefs() { [ -d /sys/kernel/tracing/events/raw_syscalls ] || [ -d /sys/kernel/debug/tracing/events/raw_syscalls ]; }
mount_tracefs() {
    have_tracefs && return 0
    [ "$(id -u)" = 0 ] || return 1
    mountpoint -q /sys/kernel/tracing 2>/dev/null || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
    mountpoint -q /sys/kernel/debug 2>/dev/null || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
    if have_tracefs; then say "mounted tracefs on /sys/kernel/tracing"; return 0; fi
    return 1
}
# bcc looks for <moddir>/build/include (and source); a dangling symlink does not count.
have_headers() { [ -d "$moddir/build/include" ] || [ -d "$moddir/source/include" ]; }

if [ "$check_only" = 0 ]; then mount_tracefs || true; fi
missing=()
# tracefs is root-only (mode 700): only root can tell whether it is there
if [ "$(id -u)" = 0 ]; then
    have_tracefs || missing+=("tracefs (mount -t tracefs tracefs /sys/kernel/tracing)")
fi
have_bpftrace || missing+=(bpftrace)
have_bcc || missing+=(python3-bpfcc)
have_headers || missing+=("kernel headers for $kver")

if [ "$(id -u)" != 0 ] && [ "$check_only" = 0 ]; then
    if [ ${#missing[@]} -gt 0 ]; then
        say "missing: ${missing[*]} (run 'make setup-tracing' as root to install them)"
    fi
    say "not root: eBPF tracing needs root; benchmarks run without it and say so"
    exit 0
fi
if [ ${#missing[@]} -eq 0 ]; then
    say "already set up: $(bpftrace --version 2>/dev/null | head -1), bcc $("$system_python" -c 'import bcc; print(getattr(bcc, "__version__", "?"))' 2>/dev/null), headers $(readlink -f "$moddir/build")"
    exit 0
fi
if [ "$check_only" = 1 ]; then
    say "missing: ${missing[*]}"
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say "missing: ${missing[*]}, and no apt-get here: install them with your package manager" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Another apt may be running (a sibling setup script): wait for its lock instead of failing.
apt_opts=(-o DPkg::Lock::Timeout=600)
updated=0
apt_update() {
    if [ "$updated" = 0 ]; then
        say "apt-get update"
        apt-get "${apt_opts[@]}" update -qq
        updated=1
    fi
}
# Is a package known to apt (has a candidate version)?
apt_has() {
    local cand
    cand="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    [ -n "$cand" ] && [ "$cand" != "(none)" ]
}
apt_install() {
    say "apt-get install $*"
    apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "$@" >/dev/null
}

pkgs=()
have_bpftrace || pkgs+=(bpftrace)
have_bcc || pkgs+=(python3-bpfcc)
if [ ${#pkgs[@]} -gt 0 ]; then
    apt_update
    apt_install "${pkgs[@]}"
fi

if ! have_headers; then
    apt_update
    exact="linux-headers-$kver"
    if apt_has "$exact"; then
        apt_install "$exact"
        say "installed $exact"
    fi
fi

if ! have_headers; then
    # Fallback: the distro's generic headers, linked for the running kernel.
    arch="$(dpkg --print-architecture)"
    say "no headers package for kernel $kver: falling back to linux-headers-$arch + symlinks in $moddir"
    apt_install "linux-headers-$arch"
    # The newest installed "<ver>-<arch>" tree and its "<ver>-common" sibling.
    build="$(ls -d /usr/src/linux-headers-*-"$arch" 2>/dev/null | sort -V | tail -1)"
    if [ -z "$build" ]; then
        say "linux-headers-$arch installed no /usr/src/linux-headers-*-$arch directory" >&2
        exit 1
    fi
    common="${build%-"$arch"}-common"
    [ -d "$common" ] || common="$build"
    mkdir -p "$moddir"
    # Replace only our own links (or dangling ones); never a real directory.
    for pair in "build:$build" "source:$common"; do
        name="${pair%%:*}"
        target="${pair#*:}"
        if [ -L "$moddir/$name" ] || [ ! -e "$moddir/$name" ]; then
            ln -sfn "$target" "$moddir/$name"
            say "linked $moddir/$name -> $target"
        fi
    done
fi

still=()
mount_tracefs || still+=("tracefs with raw_syscalls events (does this kernel have tracepoints?)")
have_bpftrace || still+=(bpftrace)
have_bcc || still+=("python3-bpfcc (import bcc under $system_python)")
have_headers || still+=("kernel headers for $kver")
if [ ${#still[@]} -gt 0 ]; then
    say "still missing after install: ${still[*]}" >&2
    exit 1
fi
say "done: $(bpftrace --version 2>/dev/null | head -1), bcc $("$system_python" -c 'import bcc; print(getattr(bcc, "__version__", "?"))' 2>/dev/null), headers $(readlink -f "$moddir/build")"
