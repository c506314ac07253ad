#!/usr/bin/env bash
# checkov pins old dependencies (packaging<24) that clash with locust and others: it gets a venv of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-checkov/bin/checkov ]; then
  python3 -m venv .venv-checkov
  .venv-checkov/bin/pip install -q --disable-pip-version-check checkov
fi
