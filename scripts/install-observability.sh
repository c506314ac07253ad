#!/usr/bin/env bash
# Tools the observability checks need: prometheus + promtool (Debian's package) and the Python
# libraries that generate dashboards and render previews. Idempotent and root-safe: each step is
# skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # policy-rc.d 101 keeps the package's own service from starting: tests run their own Prometheus
  # on a free port, and a system one on :9090 would only get in the way.
  # An existing policy-rc.d (containers ship one) is left exactly as it was.
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus
  [ -z "$made_policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi

if [ -x .venv/bin/pip ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements/observability.txt
fi
