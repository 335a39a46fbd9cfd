#!/usr/bin/env bash
# Installs the independent OpenID Connect providers that the `erpnet-oauth` CLI's interoperability tests
# run against (crates/erpnet-oauth-cli/tests/interop.rs), each pinned by a lock file:
#   - node-oidc-provider (npm; `npm ci` from package-lock.json) in
#     crates/erpnet-oauth-cli/tests/node-oidc-provider/node_modules
#   - django-oauth-toolkit (PyPI; a virtual environment from the pinned requirements.txt) in
#     crates/erpnet-oauth-cli/tests/django-oauth-toolkit/.venv
# Needs Node.js 20 or later with npm (installed from Debian's packages when missing: root or sudo), CPython
# 3.10 or later with its venv module, the npm registry and PyPI. The tests install the same on their first run when this script was not run; running it
# first makes a failure to install show here, on its own. Installs nothing that is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends nodejs npm
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
    echo "install-interop.sh: Node.js $(node --version) is too old: node-oidc-provider 8 needs 20 or later" >&2
    exit 1
fi

op=crates/erpnet-oauth-cli/tests/node-oidc-provider
pinned="$(node -p "require('./$op/package.json').dependencies['oidc-provider']")"
installed="$(node -p "try { require('./$op/node_modules/oidc-provider/package.json').version } catch { '' }")"
if [ "$installed" = "$pinned" ]; then
    echo "node-oidc-provider $installed is installed"
else
    (cd "$op" && npm ci --no-audit --no-fund --loglevel=error)
    echo "node-oidc-provider $pinned installed"
fi

dot=crates/erpnet-oauth-cli/tests/django-oauth-toolkit
# The virtual environment keeps a copy of the requirements.txt it was made from: the tests use the same
# check, and make it anew when the pins change.
if [ -x "$dot/.venv/bin/python" ] && cmp -s "$dot/requirements.txt" "$dot/.venv/requirements.txt"; then
    echo "django-oauth-toolkit $("$dot/.venv/bin/python" -c 'import oauth2_provider; print(oauth2_provider.__version__)') is installed"
else
    rm -rf "$dot/.venv"
    python3 -m venv "$dot/.venv"
    "$dot/.venv/bin/pip" install --disable-pip-version-check --quiet -r "$dot/requirements.txt"
    cp "$dot/requirements.txt" "$dot/.venv/requirements.txt"
    echo "django-oauth-toolkit installed: $(grep -i '^django-oauth-toolkit==' "$dot/requirements.txt")"
fi
