#!/usr/bin/env bash
# producer_syscalls.sh	Count syscalls by syscall name for loglab's producers (comm "logprod"):
#			syscount.bt with COMM logprod. For Linux, uses bpftrace (tracepoints only).
#
# USAGE: sudo bpftrace/producer_syscalls.sh [PID] [bpftrace options]   (Ctrl-C to end and print)
#    eg: sudo bpftrace/producer_syscalls.sh         # every process named logprod
#        sudo bpftrace/producer_syscalls.sh 4242    # only those below pid 4242 (eg the shell
#                                                   # that runs launch-producers.sh)
#
# The same as: sudo bpftrace bpftrace/syscount.bt logprod [PID]. What PID selects, the output,
# overhead, attach time and the RLIMIT_MEMLOCK message: see syscount.bt's header.
# Example output: producer_syscalls_example.txt
exec bpftrace "$(dirname "$0")/syscount.bt" logprod "$@"
