"""mirror.py with the real skopeo against two real registries (CNCF Distribution, Debian's
`docker-registry`) on loopback ports: one plays the upstream (Docker Hub), one our ECR. What is not
real: the hostnames (a wrapper maps `valkey/valkey` and the ECR host to the loopback registries and
turns TLS off, then runs skopeo itself) and ECR's own API (`aws ecr describe-images` answered from
the registry's manifest endpoint). The registries, not the script, say which digest they hold."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._tools import REPO, run, tool

MIRROR_PY = REPO / ".github" / "scripts" / "mirror.py"
ECR_HOST = "210987654321.dkr.ecr.eu-west-1.amazonaws.com"
SOURCE = "valkey/valkey:8.1.4-alpine"
MIRROR = "inferstack/mirror/docker.io/valkey/valkey"
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join([INDEX, MANIFEST, "application/vnd.docker.distribution.manifest.list.v2+json"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _registry(root: Path) -> Iterator[str]:
    port = _free_port()
    config = root / "config.yml"
    root.mkdir(parents=True)
    config.write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        [tool("docker-registry"), "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("docker-registry did not start within 30 s")
            time.sleep(0.1)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[str]:
    yield from _registry(tmp_path / "upstream")


@pytest.fixture
def ecr(tmp_path: Path) -> Iterator[str]:
    yield from _registry(tmp_path / "ecr")


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _oci_index(layout: Path, content: str) -> str:
    """An OCI layout holding a two-platform index tagged 8.1.4-alpine; returns the index's digest."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content.encode()))
    layer = _blob(layout, gzip.compress(raw.getvalue(), mtime=0))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    manifests = []
    for arch in ("amd64", "arm64"):
        config = {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                **_blob(layout, json.dumps(config).encode()),
            },
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
        }
        entry = _blob(layout, json.dumps(manifest).encode())
        manifests.append({"mediaType": MANIFEST, **entry, "platform": {"architecture": arch, "os": "linux"}})
    index = _blob(layout, json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}).encode())
    ref = {"mediaType": INDEX, **index, "annotations": {"org.opencontainers.image.ref.name": "8.1.4-alpine"}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [ref]}))
    return str(index["digest"])


def _push_upstream(tmp_path: Path, upstream: str, content: str) -> str:
    layout = tmp_path / f"layout-{hashlib.sha256(content.encode()).hexdigest()[:8]}"
    digest = _oci_index(layout, content)
    done = run(
        [tool("skopeo"), "--insecure-policy", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
         f"oci:{layout}:8.1.4-alpine", f"docker://{upstream}/valkey/valkey:8.1.4-alpine"]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return digest


def _manifest(registry: str, repo: str, ref: str) -> tuple[str, bytes] | None:
    """(Docker-Content-Digest, body) as the registry serves the manifest, or None when it has none."""
    request = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers["Docker-Content-Digest"], response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


WRAPPER = '''#!{python}
"""skopeo, with the hostnames mapped to the loopback registries and TLS off; every call logged."""
import json, os, sys
args = sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(json.dumps(args) + "\\n")
mapped = []
for a in args:
    if a.startswith("docker://valkey/"):
        a = "docker://{upstream}/" + a.removeprefix("docker://")
    a = a.replace("docker://{ecr_host}/", "docker://{ecr}/")
    mapped.append(a)
sub = mapped[0]
tls = ["--tls-verify=false"] if sub == "inspect" else ["--src-tls-verify=false", "--dest-tls-verify=false"]
os.execv({skopeo!r}, [{skopeo!r}, "--insecure-policy", sub, *tls, *mapped[1:]])
'''

AWS = '''#!{python}
"""`aws ecr describe-images` answered from the registry playing ECR (its manifest endpoint)."""
import sys, urllib.error, urllib.request
args = sys.argv[1:]
repo = args[args.index("--repository-name") + 1]
key, _, value = args[args.index("--image-ids") + 1].partition("=")
request = urllib.request.Request("http://{ecr}/v2/" + repo + "/manifests/" + value, method="HEAD",
                                 headers={{"Accept": {accept!r}}})
try:
    digest = urllib.request.urlopen(request, timeout=10).headers["Docker-Content-Digest"]
except urllib.error.HTTPError as exc:
    if exc.code != 404:
        raise
    print("An error occurred (ImageNotFoundException) when calling the DescribeImages operation", file=sys.stderr)
    sys.exit(254)
print('{{"imageDetails": [{{"imageDigest": "' + digest + '"}}]}}')
'''


def _tools(tmp_path: Path, upstream: str, ecr: str) -> tuple[dict[str, str], Path]:
    bin_dir, log = tmp_path / "bin", tmp_path / "skopeo.jsonl"
    bin_dir.mkdir()
    values = {"python": sys.executable, "log": str(log), "upstream": upstream, "ecr": ecr, "ecr_host": ECR_HOST}
    (bin_dir / "skopeo").write_text(WRAPPER.format(skopeo=tool("skopeo"), **values))
    (bin_dir / "aws").write_text(AWS.format(accept=ACCEPT, **values))
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, log


def _mirror(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, str(MIRROR_PY), *args], env=env)


def test_the_scanned_index_lands_in_the_mirror_byte_for_byte(tmp_path: Path, upstream: str, ecr: str) -> None:
    scanned = _push_upstream(tmp_path, upstream, "first build\n")
    env, log = _tools(tmp_path, upstream, ecr)

    resolved = _mirror(env, "resolve", SOURCE)
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout == f"digest={scanned}\nref=valkey/valkey@{scanned}\n"
    served = _manifest(upstream, "valkey/valkey", "8.1.4-alpine")
    assert served is not None and served[0] == scanned, "the digest the registry itself reports"

    # The tag is re-pushed upstream after the scan: another build behind 8.1.4-alpine.
    repushed = _push_upstream(tmp_path, upstream, "rebuilt base image\n")
    assert repushed != scanned

    copied = _mirror(
        env, "copy", "--name", "valkey", "--source", SOURCE, "--digest", scanned, "--prefix", f"{ECR_HOST}/inferstack"
    )
    assert copied.returncode == 0, copied.stderr
    tag = f"8.1.4-alpine-{scanned[7:19]}"
    assert json.loads(copied.stdout)["tag"] == tag
    # What the registry playing ECR holds: the scanned index, byte for byte, and both platforms.
    held = _manifest(ecr, MIRROR, tag)
    assert held is not None
    assert held[0] == scanned and "sha256:" + hashlib.sha256(held[1]).hexdigest() == scanned
    for child in json.loads(held[1])["manifests"]:
        assert _manifest(ecr, MIRROR, child["digest"]) is not None, child["platform"]
    assert _manifest(ecr, MIRROR, repushed) is None, "the re-pushed build was not copied"

    # A re-run: the mirror already holds the digest, skopeo copies nothing.
    again = _mirror(
        env, "copy", "--name", "valkey", "--source", SOURCE, "--digest", scanned, "--prefix", f"{ECR_HOST}/inferstack"
    )
    assert again.returncode == 0 and again.stdout == copied.stdout, again.stderr
    calls = [json.loads(line)[0] for line in log.read_text().splitlines()]
    assert calls == ["inspect", "copy"], calls
