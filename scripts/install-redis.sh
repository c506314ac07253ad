#!/usr/bin/env bash
# redis-server (Debian's package) for the tenancy tests: each test run starts its own server on a
# free port with a temporary directory, so the package's system service is kept from starting.
# Also the Python client in the gateway venv (a dependency of the gateway package itself, so
# installing the package brings it). Idempotent and root-safe: each step is skipped when its result
# is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/lib/apt.sh
. scripts/lib/apt.sh

if ! command -v redis-server >/dev/null; then
  apt_install redis-server
fi

if [ -x .venv/bin/python ] && ! .venv/bin/python -c "import redis.asyncio" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check -e .
fi
