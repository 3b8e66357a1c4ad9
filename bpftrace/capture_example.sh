#!/usr/bin/env bash
# capture_example.sh	Run bpftrace/NAME.bt around one known loglab burst and print the session
#			(the command, then bpftrace's output): how the *_example.txt files were made.
#
# USAGE: sudo bpftrace/capture_example.sh NAME TRANSPORT [workload options...]
#    eg: sudo bpftrace/capture_example.sh producer_syscalls unixsock --producers 4 --count 5000
#
# The burst is benchmarks.tracing.workload: the real aggregator and producers, which connect and
# then start together (--start-at-ns); bpftrace is attached before and stopped (SIGINT) after.
set -euo pipefail
cd "$(dirname "$0")/.."
name="$1"; shift
py="${PYTHON:-.venv/bin/python}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
bpftrace -B none "bpftrace/$name.bt" >"$out" 2>/dev/null &
bt=$!
for _ in $(seq 600); do grep -q "Hit Ctrl-C" "$out" && break; sleep 0.1; done
summary="$("$py" -m benchmarks.tracing.workload "$@")"
kill -INT "$bt"
wait "$bt" || true
echo "# sudo bpftrace bpftrace/$name.bt"
echo "#   around: python -m benchmarks.tracing.workload $*"
echo "#   burst: $(echo "$summary" | "$py" -c 'import json,sys; print("{producers} producer(s) x {count_per_producer} msgs of {size} B over {transport}: {messages_received} received, the last {burst_to_last_received_s:.3f} s after the start ({messages_per_s:,.0f} msg/s)".format(**json.load(sys.stdin)))')"
cat "$out"
