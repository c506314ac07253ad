#!/usr/bin/env bash
# Free disk before `make test` / `make up` install anything: a full disk otherwise shows up minutes
# later as a pip or podman error in the middle of an install (stop 24's CI: torch, after 264 s).
#
#   bash scripts/check-disk.sh test    # what `make test` runs first
#   bash scripts/check-disk.sh up      # what `make up` runs first
#
# Measured on a fresh clone with an empty image store (2026-12-03, bench/results/disk_s14.txt): the
# first `make test` peaked 14 GB above where it started: .venv 1.2 GB, .venv-engine 2.5 GB, the image
# tests' podman store 3.4 GB (kept, ~/.cache/inferstack/containers) and about 7 GB more while the
# CPU engine image builds. Below what the missing venvs need, the run cannot pass: it stops here.
# Below the whole first-run peak it may still pass (an image store may be warm): a warning.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
what="${1:-test}"
STORE="${PODMAN_TEST_STORE:-$HOME/.cache/inferstack/containers}"
# MiB; overridable for the script's own test.
NEED_VENV="${DISK_NEED_VENV_MIB:-1536}"
NEED_ENGINE="${DISK_NEED_ENGINE_MIB:-3072}"
NEED_IMAGES="${DISK_NEED_IMAGES_MIB:-10240}"

say() { echo "[disk] $*" >&2; }

free_mib="$(df -P -m "$REPO" | awk 'NR == 2 { print $4 }')"
need=0
missing=()
if [[ ! -f "$REPO/.venv/.installed" ]]; then
  need=$((need + NEED_VENV))
  missing+=(".venv")
fi
if [[ ! -f "$REPO/.venv-engine/.installed" ]]; then
  need=$((need + NEED_ENGINE))
  missing+=(".venv-engine")
fi
if ((need > free_mib)); then
  say "$((free_mib)) MiB free on $(df -P "$REPO" | awk 'NR == 2 { print $6 }'); installing ${missing[*]} needs about $need MiB."
  say "free some space (or point the checkout at a larger disk) and run it again."
  exit 1
fi
peak=$need
if [[ "$what" == "test" && ! -d "$STORE/storage" ]]; then
  peak=$((need + NEED_IMAGES))
fi
if ((peak > free_mib)); then
  say "warning: $free_mib MiB free; a first \`make $what\` here needs up to $peak MiB (the image tests build vLLM's CPU image)."
elif ((peak > 0)); then
  say "$free_mib MiB free (this run needs up to about $peak MiB)"
else
  say "$free_mib MiB free (nothing left to install)"
fi
