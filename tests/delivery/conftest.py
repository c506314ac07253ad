"""A real gateway (auth on, one development key) in front of the fake engine, started once for the
delivery tests that run the pipeline's scripts against it (smoke, load-test gate)."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import inferstack_devstack as devstack

from ._registries import registry


# The two registries of a mirror test (test_mirror_registry, test_mirror_pipeline), each a real
# registry on loopback: Docker Hub's part (the source) and our ECR's.
@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[str]:
    yield from registry(tmp_path / "upstream")


@pytest.fixture
def ecr(tmp_path: Path) -> Iterator[str]:
    yield from registry(tmp_path / "ecr")


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


# What the delivery tests cannot run here, said after every run that touched it (pass or fail).
NOT_RUN = {
    "test_mirror_pipeline.py": (
        "Trivy and cosign did NOT run: stand-ins for both (no Trivy database, no cosign package, no Sigstore "
        "here). Real: skopeo, two loopback registries, images.yml's run: steps in bash, verify-signatures.sh, "
        "release.py. Contract-tested: scan of every platform -> copy -> sign that digest -> record; the signed "
        "reference = images.json's = verified = deployed; SIGNER = images.yml on main."
    ),
}


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    ran = {report.nodeid.split("::")[0].rsplit("/", 1)[-1] for reports in terminalreporter.stats.values()
           for report in reports if hasattr(report, "nodeid")}  # fmt: skip
    notes = [f"{name}: {text}" for name, text in NOT_RUN.items() if name in ran]
    if notes:
        terminalreporter.section("not run here (tests/delivery)")
        for line in notes:
            terminalreporter.write_line(line)
