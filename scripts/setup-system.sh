#!/usr/bin/env bash
# Install the Debian packages the project needs to build its venv, when root and missing.
# Not root: say what is missing and go on (the venv may still build).
set -euo pipefail
need=()
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v make >/dev/null || need+=(make)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
else
    echo "setup: missing ${need[*]} (run as root to install them)" >&2
fi
