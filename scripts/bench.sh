#!/usr/bin/env bash
# `make bench`: the standard transport comparison (loglab and, when installable, syslog-ng side
# by side), then the report. Extra arguments for `loglab bench` can be passed in BENCH_ARGS,
# e.g. `make bench BENCH_ARGS="--transports unixsock,tcp --repeat 5"`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-results/$(date +%Y%m%d-%H%M%S)}
# shellcheck disable=SC2086  # BENCH_ARGS is a list of words on purpose
.venv/bin/loglab bench --out "$out" ${BENCH_ARGS:-}
echo
echo "results: $out/results.json"
echo "report:  $out/report.html  (and $out/report.md)"
