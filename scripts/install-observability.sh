#!/usr/bin/env bash
# Tools the observability checks need: prometheus + promtool (Debian's package) and the Python
# libraries that generate dashboards and render previews. Idempotent and root-safe: each step is
# skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/lib/apt.sh
. scripts/lib/apt.sh

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  apt_install prometheus
fi

if [ -x .venv/bin/pip ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements/observability.txt
fi
