"""bench/images/vllm-router, the yardstick as an image: built for real on the gateway image's base, started
by bench/reference_bench.py's own `start_router` in front of the fake engine, and measured where the
bench measures it (the container's main process, the router itself, on core 0).

It exists so that `make bench-reference IMAGE=... ROUTER_IMAGE=...` compares an image with an image.
The build fetches vllm-router's wheel from PyPI (28 s the first time here, with the base already built;
cached after).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from inferstack_devstack import Stack

from ._podman import REPO, Base, build_router_image

BENCH = REPO / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """bench/reference_bench.py, imported as its scripts import it (bench/ first on the path)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import reference_bench

    yield reference_bench
    for name in ("reference_bench", "ab_bench", "gateway_bench", "container", "results_file"):
        sys.modules.pop(name, None)


def _makefile_pin() -> str:
    match = re.search(r"^ROUTER_VERSION := (\S+)$", (REPO / "Makefile").read_text(), flags=re.M)
    assert match, "Makefile: no ROUTER_VERSION"
    return match.group(1)


def _listener_inode(pid: int, port: int) -> str:
    """The inode of the TCP socket listening on ``port`` in ``pid``'s network namespace."""
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # 0A: LISTEN
            return fields[9]
    raise AssertionError(f"nothing listens on port {port}")


def _socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets ``pid`` holds open."""
    links = (os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir())
    return {link[len("socket:[") : -1] for link in links if link.startswith("socket:[")}


def test_the_router_pins_agree(bench: ModuleType) -> None:
    """The venv `make bench-reference` installs and the image `make router-image` builds are one version,
    the one the benches write into their results."""
    assert _makefile_pin() == bench.ROUTER_VERSION


def test_the_reference_bench_measures_vllm_router_in_its_image(
    bench: ModuleType, python_base: Base, note: Callable[[str], None], tmp_path: Path
) -> None:
    started = time.monotonic()
    image = build_router_image(bench.ROUTER_VERSION)
    note(f"vllm-router image {image}: built in {time.monotonic() - started:.0f} s on {python_base.name}")
    import container
    import gateway_bench

    # The version the result names is the image's own (its label), not the host venv's.
    assert bench.router_version(tmp_path / "absent", image) == bench.ROUTER_VERSION
    stack = Stack(run_dir=tmp_path)
    name = "router-image-test"
    try:
        engine = gateway_bench.start_fake_engine(stack)
        # The launcher path is not used with an image: a missing one shows it is not.
        router = bench.start_router(stack, tmp_path / "absent", engine.url, name=name, image=image)
        pid = container.main_pid(container.name_for(name))
        # The process the bench reads is the router (it renames itself) and holds the bench's port.
        assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"vllm::router")
        assert _listener_inode(pid, int(router.url.rsplit(":", 1)[1])) in _socket_inodes(pid)
        assert "Cpus_allowed_list:\t0\n" in Path(f"/proc/{pid}/status").read_text()
        body = json.dumps({"model": "fake-model", "prompt": "hi", "max_tokens": 4}).encode()
        request = urllib.request.Request(
            router.url + "/v1/completions", body, {"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert answer["usage"]["completion_tokens"] > 0, answer
    finally:
        stack.stop()
        container.remove(container.name_for(name))
