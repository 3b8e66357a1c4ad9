#!/usr/bin/env bash
# Install ripgrep (the query agent's fastest scanner) when it is missing. Idempotent. Always exits
# 0: without ripgrep the agent scans with grep, and without grep with Python (slower, same answers);
# the query tests run with whatever is there and name the tool in their output.
set -uo pipefail

say() { echo "setup-query: $*"; }
# shellcheck source=scripts/apt-lib.sh
source "$(dirname "$0")/apt-lib.sh"

if command -v rg >/dev/null 2>&1; then
    say "ripgrep present: $(rg --version 2>/dev/null | head -n1)"
    exit 0
fi

if ! can_apt; then
    say "ripgrep is not installed and cannot be installed here (need root and apt-get);" \
        "the query agent will scan with grep (or Python)"
    exit 0
fi

say "installing ripgrep"
log=/tmp/setup-query-apt.log
apt_install "$log" ripgrep
if command -v rg >/dev/null 2>&1; then
    say "installed: $(rg --version 2>/dev/null | head -n1)"
else
    say "could not install ripgrep (see $log); the query agent will scan with grep"
    tail -n 5 "$log" 2>/dev/null | sed 's/^/setup-query:   /'
fi
exit 0
