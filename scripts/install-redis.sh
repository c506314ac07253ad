#!/usr/bin/env bash
# redis-server (Debian's package) for the tenancy tests: each test run starts its own server on a
# free port with a temporary directory, so the package's system service is kept from starting.
# Also the Python client in the gateway venv. Idempotent and root-safe: each step is skipped when
# its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # policy-rc.d 101: no system redis on :6379 (tests never use it). An existing policy-rc.d
  # (containers ship one) is left exactly as it was.
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server
  [ -z "$made_policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi

if [ -x .venv/bin/python ] && ! .venv/bin/python -c "import redis.asyncio" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements/tenancy.txt
fi
