#!/usr/bin/env bash
# aggregator_syscalls.sh	Count syscalls by syscall name for loglab's aggregator (comm "logagg"):
#			syscount.bt with COMM logagg. For Linux, uses bpftrace (tracepoints only).
#
# USAGE: sudo bpftrace/aggregator_syscalls.sh [PID] [bpftrace options]   (Ctrl-C to end and print)
#    eg: sudo bpftrace/aggregator_syscalls.sh       # every process named logagg
#        sudo bpftrace/aggregator_syscalls.sh 4242  # aggregator 4242 and its --workers
#
# The same as: sudo bpftrace bpftrace/syscount.bt logagg [PID]. What PID selects, the output,
# overhead, attach time and the RLIMIT_MEMLOCK message: see syscount.bt's header.
# Example output: aggregator_syscalls_example.txt
exec bpftrace "$(dirname "$0")/syscount.bt" logagg "$@"
