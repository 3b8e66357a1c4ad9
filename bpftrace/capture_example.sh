#!/usr/bin/env bash
# capture_example.sh	Run one bpftrace tool around one known loglab burst and print the session
#			(the command, then bpftrace's output): how the *_example.txt files were made.
#
# USAGE: sudo bpftrace/capture_example.sh TOOL [TOOL_ARGS...] -- TRANSPORT [workload options...]
#    eg: sudo bpftrace/capture_example.sh producer_syscalls -- unixsock --producers 4 --count 5000
#        sudo bpftrace/capture_example.sh syscount logprod -- fifo --producers 4 --count 5000
#        sudo bpftrace/capture_example.sh datagram_drops -- udp --producers 4 --rcvbuf 65536
#
# TOOL is a bpftrace tool (run as: bpftrace bpftrace/TOOL.bt TOOL_ARGS... PID) or one of the
# documented wrappers (bpftrace/TOOL.sh TOOL_ARGS... PID). PID is this script's own: the burst's
# processes run below it, so other logprod/logagg processes on the machine stay out of the
# example. Tools without a PID parameter (datagram_drops) get none.
#
# The burst is benchmarks.tracing.workload: the real aggregator and producers, which connect and
# then start together (--start-at-ns). bpftrace is attached first (its BEGIN line is awaited)
# and stopped after the burst: it runs with "-c cat" on a pipe, and closing the pipe ends cat and
# then bpftrace. (A SIGINT does the same, but bpftrace 0.17 loses one that arrives while it is
# not waiting in epoll_wait; see README.md.)
set -euo pipefail
cd "$(dirname "$0")/.."
tool_args=()
while [[ $# -gt 0 && $1 != -- ]]; do tool_args+=("$1"); shift; done
if [[ $# -gt 0 ]]; then
    shift  # --
    name="${tool_args[0]}"; tool_args=("${tool_args[@]:1}")
else
    # the older form, NAME TRANSPORT [workload options...]
    name="${tool_args[0]}"; set -- "${tool_args[@]:1}"; tool_args=()
fi
py="${PYTHON:-.venv/bin/python}"
if [[ -f "bpftrace/$name.bt" ]]; then
    tool="bpftrace/$name.bt" shown="sudo bpftrace bpftrace/$name.bt"
    cmd=(bpftrace "$tool" "${tool_args[@]}")
elif [[ -x "bpftrace/$name.sh" ]]; then
    tool="bpftrace/$name.sh" shown="sudo bpftrace/$name.sh"
    cmd=("$tool" "${tool_args[@]}")
else
    echo "capture_example.sh: no bpftrace/$name.bt or bpftrace/$name.sh" >&2; exit 2
fi
pid_note=""
if grep -q 'USAGE:.*\[PID\]' "$tool"; then
    cmd+=("$$")
    pid_note="#   PID $$: this capture script, which starts the burst: only the burst's processes count"
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkfifo "$tmp/gate"
"${cmd[@]}" -B none -c "$(type -P cat)" <"$tmp/gate" >"$tmp/out" 2>"$tmp/err" &
bt=$!
exec 3>"$tmp/gate"  # bpftrace's cat reads this: it ends when it is closed
until grep -q "Hit Ctrl-C" "$tmp/out"; do
    kill -0 "$bt" 2>/dev/null || { cat "$tmp/err" >&2; exit 1; }
    sleep 0.1
done
summary="$("$py" -m benchmarks.tracing.workload "$@")"
exec 3>&-
wait "$bt"
echo "# $shown${tool_args[*]:+ ${tool_args[*]}}${pid_note:+ $$}"
[[ -z $pid_note ]] || echo "$pid_note"
echo "#   around: python -m benchmarks.tracing.workload $*"
echo "#   burst: $(echo "$summary" | "$py" -c 'import json,sys; print("{producers} producer(s) x {count_per_producer} msgs of {size} B over {transport}: {messages_received} received, the last {burst_to_last_received_s:.3f} s after the start ({messages_per_s:,.0f} msg/s)".format(**json.load(sys.stdin)))')"
cat "$tmp/out"
