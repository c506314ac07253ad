"""An image as a bench side (the gateway's, or vllm-router's: bench/images/vllm-router): ``podman run``
on core 0, host network, in the image tests' store.

    podman --root ~/.cache/inferstack/containers/storage --runroot ~/.cache/inferstack/containers/run \\
        build --pull=never --network host --format docker -f docker/gateway/Dockerfile \\
        --ignorefile docker/gateway/Dockerfile.dockerignore -t localhost/inferstack/gateway:bench .
    .venv/bin/python bench/ab_bench.py --side image=localhost/inferstack/gateway:bench@podman ...
    make router-image   # localhost/bench/vllm-router:0.1.17, on the same base
    .venv/bin/python bench/ab_bench.py --side router=localhost/bench/vllm-router:0.1.17@vllm-router ...

The store and containers.conf are tests/images' (``make test`` builds the base there: on a machine
with no registry, a stand-in for ``python:3.11-slim-bookworm`` made from Debian's packages, whose
``python3`` is Debian's 3.11 build; say which base a figure was taken on). The container's CPU is
read from its main process as the host sees it (``.State.Pid``): ``podman run`` itself is only the
client that started it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STORE = Path(os.environ.get("PODMAN_TEST_STORE") or Path.home() / ".cache" / "inferstack" / "containers")
CONTAINERS_CONF = REPO / "tests" / "images" / "containers.conf"
ENV = {"CONTAINERS_CONF": str(CONTAINERS_CONF)}


def name_for(service: str) -> str:
    """The container of bench service ``service`` started by this process."""
    return f"bench-{service}-{os.getpid()}"


def podman(*args: str) -> list[str]:
    return ["podman", "--root", str(STORE / "storage"), "--runroot", str(STORE / "run"), *args]


def run_argv(image: str, name: str, settings: dict[str, str], core: int, args: tuple[str, ...] = ()) -> list[str]:
    """``podman run`` of ``image`` as ``name`` with ``settings`` as its environment and ``args`` after its
    entrypoint, on ``core``, in the foreground (its signals go to the container; ``--rm`` removes it after)."""
    env = [f"--env={key}={value}" for key, value in settings.items()]
    return podman("run", "--rm", "--name", name, "--network", "host", f"--cpuset-cpus={core}", *env, image, *args)


def image_id(image: str) -> str:
    """``image``'s id and the labels it was built with (the revision, where the build set one)."""
    return _inspect(image, "{{.Id}} {{json .Labels}}")


def main_pid(name: str) -> int:
    """The container's main process, as the host sees it."""
    return int(_inspect(name, "{{.State.Pid}}"))


def _inspect(what: str, template: str) -> str:
    env = {**os.environ, **ENV}
    command = podman("inspect", "--format", template, what)
    return subprocess.run(command, capture_output=True, text=True, check=True, env=env, timeout=60).stdout.strip()


def remove(name: str) -> None:
    """The container gone, whatever its client did (a client killed outright leaves it running)."""
    env = {**os.environ, **ENV}
    subprocess.run(podman("rm", "--force", "--ignore", name), capture_output=True, env=env, timeout=120)
