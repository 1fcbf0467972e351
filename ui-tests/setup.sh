#!/usr/bin/env bash
# Installs what the UI tests need from Debian's packages: Chromium (Playwright drives it; no
# browser is downloaded by Playwright). Idempotent: does nothing when `chromium` is already there.
# Sets nothing global (no environment, no alternatives).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

echo "ui-tests: installing Debian's chromium" >&2
log="$(mktemp)"
if ! { DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq \
       && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
          chromium fonts-dejavu-core; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
fi
rm -f "$log"
command -v chromium >/dev/null || { echo "ui-tests: chromium installed but not on PATH" >&2; exit 1; }
