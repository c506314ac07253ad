#!/usr/bin/env bash
# A C compiler and Python's headers, for bench/native_relay: its test compiles the native relay
# device (fastrelay.c) for the venv's interpreter. The gateway itself compiles nothing. Idempotent
# and root-safe: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/lib/apt.sh
. scripts/lib/apt.sh

if ! command -v gcc >/dev/null; then
  apt_install gcc libc6-dev
fi

# pyenv's and python.org's builds carry their headers; Debian's interpreter has them in python3-dev.
if [ -x .venv/bin/python ] && ! .venv/bin/python -c \
    "import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))"; then
  apt_install python3-dev
fi
