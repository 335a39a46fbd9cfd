#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver (Debian packages `chromium` and `chromium-driver`:
# /usr/bin/chromium, /usr/bin/chromedriver) for the web example's browser test
# (crates/erpnet-oauth-web-example/tests/browser.rs). Does nothing when both are present.
# Needs root (or sudo) and access to the Debian package archive.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium and chromedriver are installed: $(chromium --version 2>/dev/null || true)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium chromium-driver
chromium --version
chromedriver --version
