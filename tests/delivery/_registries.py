"""Two real registries (CNCF Distribution, Debian's `docker-registry`) on loopback ports, one playing
the upstream (Docker Hub), one our ECR, and the stand-ins the pipeline's scripts need around them: a
`skopeo` wrapper mapping the hostnames to the loopback registries (TLS off) before running the real
skopeo, and `aws ecr describe-images` answered from the registry's manifest endpoint. Shared by
test_mirror_registry.py and test_mirror_pipeline.py."""

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

from ._tools import run, tool

ECR_HOST = "210987654321.dkr.ecr.eu-west-1.amazonaws.com"
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join([INDEX, MANIFEST, "application/vnd.docker.distribution.manifest.list.v2+json"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def registry(root: Path) -> Iterator[str]:
    port = free_port()
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


def blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def oci_index(layout: Path, content: str, tag: str = "8.1.4-alpine") -> str:
    """An OCI layout holding a two-platform index tagged `tag`; returns the index's digest."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content.encode()))
    layer = blob(layout, gzip.compress(raw.getvalue(), mtime=0))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    manifests = []
    for arch in ("amd64", "arm64"):
        config = {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                **blob(layout, json.dumps(config).encode()),
            },
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
        }
        entry = blob(layout, json.dumps(manifest).encode())
        manifests.append({"mediaType": MANIFEST, **entry, "platform": {"architecture": arch, "os": "linux"}})
    index = blob(layout, json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}).encode())
    ref = {"mediaType": INDEX, **index, "annotations": {"org.opencontainers.image.ref.name": tag}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [ref]}))
    return str(index["digest"])


def push_upstream(
    tmp_path: Path, upstream: str, content: str, repo: str = "valkey/valkey", tag: str = "8.1.4-alpine"
) -> str:
    """A two-platform index built from `content`, pushed as <repo>:<tag>; returns its digest."""
    layout = tmp_path / f"layout-{hashlib.sha256(content.encode()).hexdigest()[:8]}"
    digest = oci_index(layout, content, tag)
    done = run(
        [tool("skopeo"), "--insecure-policy", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
         f"oci:{layout}:{tag}", f"docker://{upstream}/{repo}:{tag}"]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return digest


def manifest(host: str, repo: str, ref: str) -> tuple[str, bytes] | None:
    """(Docker-Content-Digest, body) as the registry serves the manifest, or None when it has none."""
    request = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
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
    if a.startswith(("docker://valkey/", "docker://public.ecr.aws/")):
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


def tool_env(tmp_path: Path, upstream: str, ecr: str) -> tuple[dict[str, str], Path]:
    bin_dir, log = tmp_path / "bin", tmp_path / "skopeo.jsonl"
    bin_dir.mkdir()
    values = {"python": sys.executable, "log": str(log), "upstream": upstream, "ecr": ecr, "ecr_host": ECR_HOST}
    (bin_dir / "skopeo").write_text(WRAPPER.format(skopeo=tool("skopeo"), **values))
    (bin_dir / "aws").write_text(AWS.format(accept=ACCEPT, **values))
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, log
