#!/usr/bin/env bash
# Install the Debian packages the project needs to build its venv, when root and missing.
# Not root: say what is missing and go on (the venv may still build).
# PYTHON: the interpreter the venv is made from (the Makefile's).
set -euo pipefail
PYTHON=${PYTHON:-python3}
need=()
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v make >/dev/null || need+=(make)
# The aggregator's native hot path (aggregator/native/hotpath.c) is built by the package's install:
# a C compiler, the C library's headers and the interpreter's own headers. Without them the
# install still succeeds and the aggregator runs its pure-Python path (and says so).
command -v cc >/dev/null || need+=(gcc)
[ -e /usr/include/stdio.h ] || need+=(libc6-dev)
if ! "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
    # Debian's python3-dev holds the headers of Debian's python3 only.
    if [ "$("$PYTHON" -c 'import sys; print(sys.prefix)' 2>/dev/null)" = /usr ]; then
        need+=(python3-dev)
    else
        echo "setup: $PYTHON has no Python.h and is not Debian's: the aggregator will run its pure-Python path" >&2
    fi
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
else
    echo "setup: missing ${need[*]} (run as root to install them)" >&2
fi
