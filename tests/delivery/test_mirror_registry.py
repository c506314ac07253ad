"""mirror.py with the real skopeo against two real registries (CNCF Distribution, Debian's
`docker-registry`) on loopback ports: one plays the upstream (Docker Hub), one our ECR. What is not
real: the hostnames (a wrapper maps `valkey/valkey` and the ECR host to the loopback registries and
turns TLS off, then runs skopeo itself) and ECR's own API (`aws ecr describe-images` answered from
the registry's manifest endpoint). The registries, not the script, say which digest they hold."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from ._registries import ECR_HOST, manifest, push_upstream, tool_env
from ._tools import REPO, run

MIRROR_PY = REPO / ".github" / "scripts" / "mirror.py"
SOURCE = "valkey/valkey:8.1.4-alpine"
MIRROR = "inferstack/mirror/docker.io/valkey/valkey"


def _mirror(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, str(MIRROR_PY), *args], env=env)


def test_the_scanned_index_lands_in_the_mirror_byte_for_byte(tmp_path: Path, upstream: str, ecr: str) -> None:
    scanned = push_upstream(tmp_path, upstream, "first build\n")
    env, log = tool_env(tmp_path, upstream, ecr)

    resolved = _mirror(env, "resolve", SOURCE)
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.startswith(f"digest={scanned}\nref=valkey/valkey@{scanned}\n")
    # The index's platform images, as the registry serves the index (test_mirror_pipeline.py scans each).
    assert resolved.stdout.endswith('platforms=["linux/amd64", "linux/arm64"]\n')
    served = manifest(upstream, "valkey/valkey", "8.1.4-alpine")
    assert served is not None and served[0] == scanned, "the digest the registry itself reports"

    # The tag is re-pushed upstream after the scan: another build behind 8.1.4-alpine.
    repushed = push_upstream(tmp_path, upstream, "rebuilt base image\n")
    assert repushed != scanned

    copied = _mirror(
        env, "copy", "--name", "valkey", "--source", SOURCE, "--digest", scanned, "--prefix", f"{ECR_HOST}/inferstack"
    )
    assert copied.returncode == 0, copied.stderr
    tag = f"8.1.4-alpine-{scanned[7:19]}"
    assert json.loads(copied.stdout)["tag"] == tag
    # What the registry playing ECR holds: the scanned index, byte for byte, and both platforms.
    held = manifest(ecr, MIRROR, tag)
    assert held is not None
    assert held[0] == scanned and "sha256:" + hashlib.sha256(held[1]).hexdigest() == scanned
    for child in json.loads(held[1])["manifests"]:
        assert manifest(ecr, MIRROR, child["digest"]) is not None, child["platform"]
    assert manifest(ecr, MIRROR, repushed) is None, "the re-pushed build was not copied"

    # A re-run: the mirror already holds the digest, skopeo copies nothing.
    again = _mirror(
        env, "copy", "--name", "valkey", "--source", SOURCE, "--digest", scanned, "--prefix", f"{ECR_HOST}/inferstack"
    )
    assert again.returncode == 0 and again.stdout == copied.stdout, again.stderr
    calls = [json.loads(line)[0] for line in log.read_text().splitlines()]
    assert calls == ["inspect", "copy"], calls
