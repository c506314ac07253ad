"""A real gateway (auth on, one development key) in front of the fake engine, started once for the
delivery tests that run the pipeline's scripts against it (smoke, load-test gate)."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import inferstack_devstack as devstack


@dataclass(frozen=True)
class Gateway:
    url: str  # http://127.0.0.1:<port>, no /v1
    port: int
    key: str
    model: str = "tiny-llama"


@pytest.fixture(scope="session")
def gateway() -> Iterator[Gateway]:
    devstack.RUN_DIR.mkdir(parents=True, exist_ok=True)
    stack = devstack.Stack(run_dir=Path(tempfile.mkdtemp(prefix="delivery-", dir=devstack.RUN_DIR)))
    try:
        port = devstack.free_port()
        engine = stack.start(
            f"fake-engine-{port}",
            [
                sys.executable,
                "-m",
                "inferstack_fake_engine",
                "--port",
                str(port),
                "--model",
                "tiny-llama",
                "--ttft",
                "0.01",
                "--itl",
                "0.002",
            ],
            f"http://127.0.0.1:{port}",
        )
        stack.wait_ready(engine, "/health", 30)
        keys = stack.run_dir / "keys.yaml"
        key = devstack.dev_key(keys)
        service = devstack.start_gateway(stack, [engine.url], env=devstack.auth_env(keys))
        yield Gateway(url=service.url, port=int(service.url.rsplit(":", 1)[1]), key=key)
    finally:
        stack.stop()
