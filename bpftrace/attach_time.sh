#!/usr/bin/env bash
# attach_time.sh	How long each bpftrace tool takes to attach: from its start to its BEGIN
#			line ("... Hit Ctrl-C to end."), when its probes are live. Prints the median,
#			the fastest and the slowest of RUNS runs per tool, one tool at a time.
#
# USAGE: sudo bpftrace/attach_time.sh [RUNS] [TOOL...]      (default: 5 runs of every tool)
#    eg: sudo bpftrace/attach_time.sh 3 syscount transport_io
#
# Each run is "bpftrace -c true TOOL.bt ARGS" (syscount.bt gets COMM logprod): it ends by itself
# once attached. Most of the time is bpftrace compiling the program with LLVM (CPU-bound), so
# the figures grow when the machine is busy, and when several tools start at once.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"; shift || true
tools=("$@")
if [[ ${#tools[@]} -eq 0 ]]; then
    for f in bpftrace/*.bt; do tools+=("$(basename "$f" .bt)"); done
fi
true_bin="$(type -P true)"
one_run() {  # prints ms from start to the BEGIN line
    local t0 t1="" line fd
    t0=$(date +%s%N)
    exec {fd}< <(bpftrace -B none -c "$true_bin" "$@" 2>/dev/null)
    while IFS= read -r line <&"$fd"; do
        if [[ $line == *"Hit Ctrl-C"* ]]; then t1=$(date +%s%N); break; fi
    done
    cat <&"$fd" >/dev/null
    exec {fd}<&-
    [[ -n $t1 ]] || { echo "bpftrace did not attach: bpftrace $*" >&2; return 1; }
    echo $(((t1 - t0) / 1000000))
}
printf '%-26s %8s %8s %8s  (%s runs, %s)\n' tool median min max "$runs" "$(bpftrace --version)"
for name in "${tools[@]}"; do
    args=("bpftrace/$name.bt")
    [[ $name == syscount ]] && args+=(logprod)
    ms=()
    for _ in $(seq "$runs"); do ms+=("$(one_run "${args[@]}")"); done
    sorted=($(printf '%s\n' "${ms[@]}" | sort -n))
    med=${sorted[$(((${#sorted[@]} - 1) / 2))]}
    printf '%-26s %7.2fs %7.2fs %7.2fs\n' "$name.bt" "$(bc <<<"scale=2; $med/1000")" \
        "$(bc <<<"scale=2; ${sorted[0]}/1000")" "$(bc <<<"scale=2; ${sorted[-1]}/1000")"
done
