#!/bin/sh
# A Debian suite's own python3 in a chroot, with the gateway image's dependency pins, for
# bench/ab_bench.py's `--side NAME=$REPO/service@uvicorn=chroot DIR /opt/venv/bin/python`
# (bench/results/ab_interpreters.json and ab_image.json were taken on bookworm, trixie and forky).
#
#   bench/chroot_python.sh SUITE DIR     # as root; then, when done: umount DIR$REPO
#
# The repository is bind-mounted at its own path inside, so PYTHONPATH and the bench's paths hold.
set -eu
suite=$1
dir=$2
repo=$(cd "$(dirname "$0")/.." && pwd)
# A testing suite's Release may be past its Valid-Until on a mirror snapshot; the packages are what count.
mmdebstrap --quiet --variant=minbase --aptopt='Acquire::Check-Valid-Until "false"' \
  --include=python3,python3-venv,ca-certificates "$suite" "$dir"
cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"  # this host's TLS proxy, if any
cp /etc/resolv.conf "$dir/etc/resolv.conf"
cp "$repo/docker/gateway/constraints.txt" "$dir/tmp/constraints.txt"
chroot "$dir" python3 -m venv /opt/venv
chroot "$dir" /opt/venv/bin/pip install --quiet --only-binary=:all: --requirement /tmp/constraints.txt
mkdir -p "$dir$repo"
mount --bind "$repo" "$dir$repo"
chroot "$dir" /opt/venv/bin/python -VV
echo "ready: --side NAME=$repo/service@uvicorn=chroot $dir /opt/venv/bin/python (umount $dir$repo when done)"
