#!/usr/bin/env bash
# The release's load-test gate (deploy-env.yml) and the on-demand load test (loadtest.yml):
# what `make loadtest` runs, against HOST with PROFILE; exits with loadtests/run.py's code (0 every
# SLO held, 3 an SLO broke, anything else: the run itself failed), which make would turn into 2.
#
# Environment (all required but PROFILE):
#   HOST                the gateway's base URL, without /v1
#   INFERSTACK_API_KEY  a gateway key (the one name loadtests/ reads; comma-separated for several)
#   REPORT_DIR          where the report goes (uploaded as the run's artifact)
#   PROFILE             a profile in loadtests/profiles or a path (default: smoke)
set -euo pipefail
: "${HOST:?HOST: the gateway base URL}"
: "${INFERSTACK_API_KEY:?INFERSTACK_API_KEY: a gateway key (unset: every request would be a 401)}"
: "${REPORT_DIR:?REPORT_DIR: where the report goes}"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
mkdir -p "$REPORT_DIR"
make --no-print-directory install
exec .venv/bin/python loadtests/run.py --host "$HOST" --profile "${PROFILE:-smoke}" --report-dir "$REPORT_DIR"
