"""`make dashboards-preview` refuses a window in which the gateway answered 401/403: a real gateway
(auth on) over the fake engine, scraped by a real Prometheus; requests with a wrong key make the
preview exit 3 with a message and write nothing, requests with the right key let it through."""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import inferstack_devstack as devstack
from observability import preview, promapi

from .promserver import Job, prometheus


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, str, str]]:
    devstack.RUN_DIR.mkdir(parents=True, exist_ok=True)
    stack = devstack.Stack(run_dir=Path(tempfile.mkdtemp(prefix="preview-", dir=devstack.RUN_DIR)))
    try:
        port = devstack.free_port()
        argv = [sys.executable, "-m", "inferstack_fake_engine", "--port", str(port), "--model", "tiny-llama"]
        engine = stack.start(f"fake-engine-{port}", argv, f"http://127.0.0.1:{port}")
        stack.wait_ready(engine, "/health", 30)
        keys = stack.run_dir / "keys.yaml"
        key = devstack.dev_key(keys)
        service = devstack.start_gateway(stack, [engine.url], env=devstack.auth_env(keys))
        # Where Prometheus scrapes: the admin listener once the gateway has one (issue 13), else the public port.
        metrics = getattr(service, "admin_url", "") or service.url
        yield service.url, metrics, key
    finally:
        stack.stop()


def _chat(url: str, key: str) -> int:
    body = json.dumps({"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    req = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=body.encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _wait_for(prom: str, expr: str, deadline_s: float = 20) -> None:
    deadline = time.monotonic() + deadline_s
    while not promapi.query(prom, expr):
        assert time.monotonic() < deadline, f"Prometheus never saw {expr}"
        time.sleep(0.5)


def test_preview_refuses_a_window_with_auth_errors(
    gateway: tuple[str, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, metrics, key = gateway
    target = metrics.removeprefix("http://")
    with prometheus(tmp_path / "prom", [Job("gateway", [target], {})]) as prom:
        assert {_chat(url, key) for _ in range(3)} == {200}
        _wait_for(prom, 'inferstack_requests_total{status="200"}')
        end = time.time()
        assert preview.auth_errors(prom, end - 60, end) == {}, "right key: no auth errors"

        assert {_chat(url, "isk-stale-key") for _ in range(4)} == {401}
        _wait_for(prom, 'inferstack_requests_total{status="401"}')
        end = time.time()
        assert preview.auth_errors(prom, end - 60, end) == {"401": 4}

        out = tmp_path / "png"
        code = preview.main(["--prometheus", prom, "--out", str(out), "--minutes", "1"])
        assert code == preview.EXIT_AUTH_ERRORS
        assert not out.exists(), "a refused preview writes nothing"
        err = capsys.readouterr().err
        assert "preview refused" in err and "4 x 401" in err, err
