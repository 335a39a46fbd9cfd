#!/usr/bin/env bash
# Installs redis-server (Debian package `redis-server`: /usr/bin/redis-server) for the tests of
# erpnet-oauth-redis, which start and stop their own servers on free loopback ports (no service is
# started here). Does nothing when it is present. Needs root (or sudo) and access to the Debian archive.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    echo "redis-server is installed: $(redis-server --version)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends redis-server
# The package may start a system-wide service; the tests need none (they run their own servers).
redis-server --version
