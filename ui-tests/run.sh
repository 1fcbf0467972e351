#!/usr/bin/env bash
# CI entry point for nbflow's JupyterLab UI tests: Debian's Chromium if missing, the node
# packages (no browser download), then the Playwright tests against a real `jupyter lab` that
# Playwright starts (port 8888). Arguments go to `playwright test`. Exits non-zero on failure.
# Expects nbflow installed in the Python that runs `jupyter` (`pip install -e .` at the repo root).
set -euo pipefail
cd "$(dirname "$0")"

bash setup.sh

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
install=(jlpm install)
if [ -n "${CI:-}" ]; then
    # The lock file is committed: CI installs exactly it, and fails if package.json disagrees.
    install+=(--immutable)
fi
log="$(mktemp)"
if ! "${install[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
fi
rm -f "$log"

status=0
jlpm playwright test "$@" || status=$?
if [ "$status" -ne 0 ] && [ -f jupyter-server.log ]; then
    echo "---- last lines of ui-tests/jupyter-server.log ----" >&2
    tail -n 60 jupyter-server.log >&2
fi
exit "$status"
