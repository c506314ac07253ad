"""The post-deploy smoke test (.github/scripts/smoke.py) against the project's fake vLLM engine,
which speaks the same OpenAI API as the gateway: it passes on a healthy server and fails on a
broken one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

import inferstack_devstack as devstack

from ._shims import Shims
from ._tools import REPO, run
from .conftest import Gateway

SMOKE = REPO / ".github" / "scripts" / "smoke.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def fake_engine(*args: str) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "inferstack_fake_engine", "--port", str(port), "--model", "tiny-llama", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "fake engine exited"
                assert time.monotonic() < deadline, "fake engine did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _smoke(base_url: str, *args: str) -> tuple[int, str, str]:
    result = run(
        [sys.executable, str(SMOKE), "--base-url", base_url, "--timeout", "10", *args],
        env={"INFERSTACK_API_KEY": "test", "PATH": "/usr/bin:/bin"},
    )
    return result.returncode, result.stdout, result.stderr


def test_passes_against_a_healthy_server() -> None:
    with fake_engine() as url:
        code, out, err = _smoke(url)
    assert code == 0, err
    assert "ok   chat (tiny-llama" in out and "ok   stream (tiny-llama" in out


def test_fails_when_the_model_is_not_served() -> None:
    with fake_engine() as url:
        code, _, err = _smoke(url, "--model", "other-model")
    assert code == 1 and "not 'other-model'" in err


def test_fails_when_completions_fail_and_retries_until_the_deadline() -> None:
    with fake_engine("--error-status", "500") as url:
        started = time.monotonic()
        # Two retries fit in the deadline while a failing pass takes under 1 s (2 x pass + 2 x 0.5 s <= 3 s);
        # with 1.5 s a pass had to take under 0.25 s, which a loaded machine can miss.
        code, _, err = _smoke(url, "--deadline", "3", "--retry-interval", "0.5")
        elapsed = time.monotonic() - started
    assert code == 1
    assert "FAIL chat" in err and "FAIL stream" in err
    assert err.count("retrying in") >= 2, "failed checks are retried until the deadline"
    assert elapsed < 30


# -- the deploy's "Reach the gateway" + "Smoke test" steps, against a real gateway -------------------

REACH = REPO / ".github" / "scripts" / "reach-gateway.sh"


def test_reach_and_smoke_through_the_service_port_contract(gateway: Gateway, tmp_path: Path) -> None:
    """reach-gateway.sh's `kubectl port-forward svc/inferstack-gateway L:P` must name a port of the
    rendered Service whose targetPort is a container port of the gateway pods (a shim resolves it
    exactly as kubectl does, then forwards to a real gateway, auth on); smoke.py then passes through it."""
    manifest = tmp_path / "base.yaml"
    manifest.write_text(run(["kubectl", "kustomize", str(REPO / "k8s" / "base")], check=True).stdout)
    shims = Shims(tmp_path / "shims", {"manifest": str(manifest), "backend": f"127.0.0.1:{gateway.port}"})
    shims.add("kubectl")
    local = devstack.free_port()
    try:
        reach = subprocess.run(
            ["bash", str(REACH), "inferstack", str(local)],
            env=shims.env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert reach.returncode == 0, reach.stdout + reach.stderr + (tmp_path / "port-forward.log").read_text()
        [call] = shims.calls("kubectl")
        assert call[-2:] == ["svc/inferstack-gateway", f"{local}:80"]
        smoke = run(
            [sys.executable, str(SMOKE), "--base-url", f"http://127.0.0.1:{local}/v1", "--timeout", "10"],
            env={"INFERSTACK_API_KEY": gateway.key, "PATH": "/usr/bin:/bin"},
        )
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        assert "ok   stream (tiny-llama" in smoke.stdout
    finally:
        pids = Path(f"{shims.log}.pids")
        for pid in pids.read_text().split() if pids.exists() else []:
            os.kill(int(pid), signal.SIGTERM)


def test_the_forwarded_port_is_the_gateway_service_port() -> None:
    """The same contract without a process: the script's port is the Service's, which targets `http`."""
    service = yaml.safe_load((REPO / "k8s" / "base" / "gateway" / "service.yaml").read_text())
    [port] = [p for p in service["spec"]["ports"] if p["name"] == "http"]
    assert f"\nservice_port={port['port']}\n" in REACH.read_text()
    assert port["targetPort"] == "http"
