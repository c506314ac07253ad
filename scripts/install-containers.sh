#!/usr/bin/env bash
# Container tools for the image tests (tests/images): Debian's podman and runc build and run the
# images without a Docker daemon, and mmdebstrap makes a stand-in base image from Debian packages
# when no registry is reachable. crun (podman's default runtime) fails on this kind of machine's
# hybrid cgroups, so runc is installed and chosen in tests/images/containers.conf.
# Idempotent and root-safe: nothing is installed when the three are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/lib/apt.sh
. scripts/lib/apt.sh

missing=()
# catatonit: podman builds its pod infra ("pause") image from it locally, as no registry is reachable.
for tool in podman runc mmdebstrap catatonit; do
  command -v "$tool" >/dev/null || [ -x "/usr/libexec/podman/$tool" ] || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi
