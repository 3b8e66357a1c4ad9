#!/usr/bin/env bash
# launch-producers.sh: start N producers against a running aggregator, wait for all of them.
#
# USAGE: bash launch-producers.sh [TRANSPORT] [-n PRODUCERS] [-c COUNT] [-i INTERVAL_MS]
#                                 [-r RATE] [-s SIZE] [-b BATCH] [-a ADDRESS] [-p ID_PREFIX]
#
# Defaults reproduce the Go original's workload: unixsock, 5 producers, 50 messages each,
# 100 ms apart (250 lines in all). Exits non-zero if any producer failed, naming which.
#
# Examples:
#   aggregator unixsock &                  # in another terminal, or in the background
#   bash launch-producers.sh unixsock
#   bash launch-producers.sh tcp -a 127.0.0.1:5140 -n 8 -c 10000 -i 0 -b 64
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

transport=unixsock
if [[ $# -gt 0 && $1 != -* ]]; then transport=$1; shift; fi
producers=5 count=50 interval_ms=100 rate="" size=200 batch=1 address="" prefix=producer
while [[ $# -gt 0 ]]; do
    case $1 in
        -n|--producers) producers=$2; shift 2 ;;
        -c|--count) count=$2; shift 2 ;;
        -i|--interval-ms) interval_ms=$2; shift 2 ;;
        -r|--rate) rate=$2; interval_ms=""; shift 2 ;;
        -s|--size) size=$2; shift 2 ;;
        -b|--batch) batch=$2; shift 2 ;;
        -a|--address) address=$2; shift 2 ;;
        -p|--prefix) prefix=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "launch-producers.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $producers =~ ^[1-9][0-9]*$ ]] || { echo "launch-producers.sh: -n must be a positive integer" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
producer_cmd=$here/.venv/bin/producer
[[ -x $producer_cmd ]] || producer_cmd=$(command -v producer) || {
    echo "launch-producers.sh: no producer command: run 'make setup' first" >&2; exit 2; }
# The transports are the registry's (aggregator/transports), asked of the producer's own
# interpreter, so a newly registered transport is accepted here with no edit.
python_cmd=$(dirname "$(readlink -f "$producer_cmd")")/python
[[ -x $python_cmd ]] || python_cmd=$(command -v python3)
read -r -a transports < <("$python_cmd" -c 'from aggregator.transports import TRANSPORT_NAMES; print(*TRANSPORT_NAMES)')
if [[ " ${transports[*]} " != *" $transport "* ]]; then
    echo "launch-producers.sh: unknown transport '$transport' (${transports[*]})" >&2; exit 2
fi

args=("$transport" --count "$count" --size "$size" --batch "$batch")
[[ -n $address ]] && args+=(--address "$address")
if [[ -n $rate ]]; then args+=(--rate "$rate"); elif [[ -n $interval_ms ]]; then args+=(--interval-ms "$interval_ms"); fi

echo "launching $producers producers x $count messages over $transport${address:+ ($address)}" >&2
pids=()
for ((i = 1; i <= producers; i++)); do
    "$producer_cmd" "${args[@]}" --id "$prefix-$i" --seed "$i" &
    pids+=($!)
done
# Stop the producers if we are interrupted, rather than leaving them running.
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM

failed=0
for ((i = 0; i < producers; i++)); do
    if ! wait "${pids[$i]}"; then
        echo "launch-producers.sh: producer $prefix-$((i + 1)) failed" >&2
        failed=$((failed + 1))
    fi
done
if ((failed)); then
    echo "launch-producers.sh: $failed of $producers producers failed" >&2
    exit 1
fi
echo "launch-producers.sh: all $producers producers done ($((producers * count)) messages)" >&2
