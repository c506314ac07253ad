"""podman for the image tests: a storage of its own, the base image, and pods that clean up after
themselves. Tools come from scripts/install-containers.sh (`make tools`).

The images are built and run for real. Only the base may differ from production: when no registry
is reachable, the base the Dockerfiles name (`python:3.11-slim-bookworm`) is replaced by a stand-in
made from Debian packages, and the tests say so in their summary.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DOCKER = REPO / "docker"
ROUTER_DOCKERFILE = REPO / "bench" / "images" / "vllm-router" / "Dockerfile"
CONTAINERS_CONF = HERE / "containers.conf"
# A storage of the tests' own, shared by every checkout on the machine (the cache lives there): a
# stand-in tagged with an official image's name must never be found by a plain `podman run`.
STORE = Path(os.environ.get("PODMAN_TEST_STORE") or Path.home() / ".cache" / "inferstack" / "containers")
INSTALL_HINT = "run scripts/install-containers.sh (or make tools)"
STAND_IN_LABEL = "org.inferstack.stand-in-recipe"
# The base's Python (venv, `python` on PATH), CA certificates, and Python.h: vLLM compiles against
# it when it starts on CPU.
STAND_IN_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")


class PodmanError(RuntimeError):
    pass


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("podman")
    if exe is None:
        pytest.fail(f"podman is not installed: {INSTALL_HINT}")
    cmd = [exe, "--root", str(STORE / "storage"), "--runroot", str(STORE / "run"), *args]
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if check and result.returncode != 0:
        raise PodmanError(f"podman {' '.join(args[:3])} ... failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def base_image_name(dockerfile: Path) -> str:
    """The fully qualified name of the base the Dockerfile's `ARG PYTHON_IMAGE=` default names."""
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile.read_text(), flags=re.M)
    assert match, f"{dockerfile}: no ARG PYTHON_IMAGE default"
    name = match.group(1)
    return name if "/" in name else f"docker.io/library/{name}"


@dataclass(frozen=True)
class Base:
    name: str
    stand_in: bool
    note: str


@contextmanager
def _locked(path: Path, deadline_s: float) -> Iterator[None]:
    """A machine-wide lock (another checkout's test run may be making the same base)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{path} is held by another test run for over {deadline_s:.0f} s")
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _stand_in_recipe(name: str) -> tuple[str, list[str], list[Path]]:
    """(cache key, mmdebstrap command without its output path, CA files copied in) for `name`."""
    match = re.fullmatch(r"docker\.io/library/python:(\d+\.\d+)-slim-(\w+)", name)
    assert match, f"no stand-in recipe for {name}: only python:X.Y-slim-<debian suite> bases"
    python, suite = match.groups()
    packages = [*STAND_IN_PACKAGES, f"libpython{python}-dev"]
    # pip inside the builds goes through this machine's TLS proxy when it has one: its CA must be
    # trusted in the base as it is on the host.
    certs = sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []
    cmd = ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(packages)}"]
    if certs:
        cmd += [
            f"--customize-hook=copy-in {' '.join(map(str, certs))} {HOST_CA_DIR}/",
            '--customize-hook=chroot "$1" update-ca-certificates',
        ]
    cmd.append(suite)
    digest = hashlib.sha256(json.dumps(cmd).encode())
    for cert in certs:
        digest.update(cert.read_bytes())
    return digest.hexdigest()[:16], cmd, certs


def _labels(name: str) -> dict[str, str] | None:
    result = podman("image", "inspect", "--format", "{{json .Labels}}", name, check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout) or {}


def _registry_pull(name: str) -> bool:
    """True when the official base came from its registry (never here: no registry is reachable)."""
    try:
        return podman("pull", "--quiet", name, timeout=300, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def ensure_base(dockerfile: Path) -> Base:
    """The Dockerfile's base in the tests' store: from its registry when one answers, else a stand-in
    from Debian packages, built once per recipe and kept (about 25 s idle, minutes on a busy host)."""
    name = base_image_name(dockerfile)
    with _locked(STORE / "base.lock", deadline_s=900):
        if _registry_pull(name):
            return Base(name, stand_in=False, note=f"{name} pulled from its registry (the official image)")
        key, cmd, certs = _stand_in_recipe(name)
        labels = _labels(name)
        if labels is not None and labels.get(STAND_IN_LABEL) == key:
            how = "reused from the cache"
        else:
            if shutil.which("mmdebstrap") is None:
                pytest.fail(f"no registry is reachable and mmdebstrap is missing: {INSTALL_HINT}")
            started = time.monotonic()
            with tempfile.TemporaryDirectory(prefix="stand-in-", dir=STORE) as tmp:
                tarball = Path(tmp) / "rootfs.tar"
                built = subprocess.run([*cmd, str(tarball)], capture_output=True, text=True, timeout=1200)
                if built.returncode != 0:
                    raise PodmanError(f"mmdebstrap failed:\n{built.stderr[-4000:]}")
                podman(
                    "import",
                    "--quiet",
                    "--change",
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--change",
                    'CMD ["python3"]',
                    "--change",
                    f"LABEL {STAND_IN_LABEL}={key}",
                    str(tarball),
                    name,
                    timeout=600,
                )
            how = f"built in {time.monotonic() - started:.0f} s"
        certs_note = f", with this host's CA certificates ({', '.join(c.name for c in certs)})" if certs else ""
        note = (
            f"{name} is a STAND-IN, not the official image: no registry is reachable, so it was made from"
            f" Debian {cmd[-1]} packages with mmdebstrap ({', '.join(cmd[3].split('=', 1)[1].split(','))}"
            f"{certs_note}); {how}, recipe {key}"
        )
        return Base(name, stand_in=True, note=note)


def image_tag(image: str) -> str:
    """The tag this checkout builds `image` under: stable, so a rebuild reuses the cached layers
    and replaces the previous image; distinct per checkout, so concurrent runs do not retag each
    other's images."""
    return f"localhost/inferstack/{image}:test-{hashlib.sha256(str(REPO).encode()).hexdigest()[:8]}"


def build(dockerfile: Path, tag: str, *extra: str, timeout: float = 900, context: Path = REPO) -> float:
    """Build the image from ``context`` (the repository root) with the Dockerfile's own ignore file;
    returns seconds. --pull=never: the base is the one ensure_base() put in the store; --network host:
    pip reaches its index as it does on this host; --format docker keeps HEALTHCHECK (OCI drops it)."""
    ignore = dockerfile.with_name("Dockerfile.dockerignore")
    previous = podman("image", "inspect", "--format", "{{.Id}}", tag, check=False).stdout.strip()
    started = time.monotonic()
    podman(
        "build",
        "--quiet",
        "--pull=never",
        "--network",
        "host",
        "--format",
        "docker",
        "--file",
        str(dockerfile),
        *(("--ignorefile", str(ignore)) if ignore.exists() else ()),
        "--tag",
        tag,
        *extra,
        str(context),
        timeout=timeout,
    )
    seconds = time.monotonic() - started
    current = podman("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    if previous and previous != current:
        # The image this tag named before: without this, every source change leaves one behind.
        podman("rmi", previous, check=False)
    return seconds


def build_router_image(version: str) -> str:
    """vllm-router ``version`` as an image on the gateway image's base (bench/images/vllm-router, a
    measuring device for bench/reference_bench.py and bench/ab_bench.py); returns its tag."""
    ensure_base(DOCKER / "gateway" / "Dockerfile")
    tag = f"localhost/bench/vllm-router:{version}"
    arg = f"VLLM_ROUTER_VERSION={version}"
    build(ROUTER_DOCKERFILE, tag, "--build-arg", arg, timeout=600, context=ROUTER_DOCKERFILE.parent)
    return tag


@dataclass
class Pod:
    name: str

    def run(self, name: str, image: str, *args: str, options: tuple[str, ...] = ()) -> str:
        """Start a container in the pod (detached, no health check timers: they need systemd)."""
        container = f"{self.name}-{name}"
        podman("run", "--detach", "--pod", self.name, "--name", container, "--no-healthcheck", *options, image, *args)
        return container


def remove_orphans() -> None:
    """Remove test pods whose pytest process is gone: a run killed from outside (a CI timeout, kill
    -9) skips its ``finally`` and would leave a 4 GB engine running for good."""
    found = podman("pod", "ps", "--format", "{{.Name}}", "--filter", "name=^inferstack-test-", check=False)
    for name in found.stdout.split():
        pid = name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            podman("pod", "rm", "--force", "--time", "5", name, timeout=120, check=False)


@contextmanager
def pod(prefix: str, ports: dict[int, int], shm_size: str | None = None) -> Iterator[Pod]:
    """A pod publishing container ports on loopback ({host port: container port}), removed with its
    containers afterwards whatever happens. Containers in a pod share localhost and /dev/shm."""
    name = f"inferstack-test-{prefix}-{os.getpid()}"
    remove_orphans()
    podman("pod", "rm", "--force", "--ignore", name, timeout=120)
    args = ["pod", "create", "--name", name]
    for host, container in ports.items():
        args += ["--publish", f"127.0.0.1:{host}:{container}"]
    if shm_size:
        args += ["--shm-size", shm_size]
    podman(*args)
    try:
        yield Pod(name)
    finally:
        podman("pod", "rm", "--force", "--time", "5", name, timeout=120, check=False)


def logs(container: str) -> str:
    result = podman("logs", "--tail", "60", container, check=False)
    return (result.stdout + result.stderr)[-6000:]


def running(container: str) -> bool:
    result = podman("inspect", "--format", "{{.State.Running}}", container, check=False)
    return result.stdout.strip() == "true"


def wait_http(url: str, container: str, deadline_s: float) -> None:
    """Poll `url` until it answers 200; fail at once with the logs if the container stops."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if not running(container):
            pytest.fail(f"{container} stopped before {url} answered:\n{logs(container)}")
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer 200 within {deadline_s:.0f} s:\n{logs(container)}")
