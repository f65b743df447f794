#!/usr/bin/env bash
# Install the test dependencies and run the whole test suite: lint, types, tests.
#
# On a fresh Debian/Ubuntu machine this also installs the real Gearman peers the interop tests
# run against (gearman-job-server, gearman-tools) and PostgreSQL, when it can (root or sudo).
# Without them those tests skip with a reason, unless GEAR_REQUIRE_INTEROP=1 (CI), where a missing
# peer fails the run. Extra arguments go to pytest, e.g. ./run-tests.sh tests/protocol -x
set -euo pipefail
cd "$(dirname "$0")"

if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="$(command -v sudo || true)"
    missing=""
    command -v gearmand >/dev/null 2>&1 || [ -x /usr/sbin/gearmand ] || missing="$missing gearman-job-server"
    command -v gearadmin >/dev/null 2>&1 || missing="$missing gearman-tools"
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
    command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
    if [ -n "$missing" ] && { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; then
        echo "installing Debian packages:$missing"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
    fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

echo "== ruff"
.venv/bin/ruff check src tests bench
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
