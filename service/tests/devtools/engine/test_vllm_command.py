"""The launcher's contract without a real vLLM: argv, environment, readiness wait and its failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from inferstack_engine import vllm


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_command_serves_the_model_on_loopback_with_prefix_caching() -> None:
    argv, env = vllm.command("/models/tiny", port=8123, served_name="tiny-llama", python="/venv/bin/python")

    assert argv[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert _flag(argv, "--model") == "/models/tiny"
    assert _flag(argv, "--served-model-name") == "tiny-llama"
    assert _flag(argv, "--host") == "127.0.0.1"
    assert _flag(argv, "--port") == "8123"
    assert _flag(argv, "--max-model-len") == "2048"
    assert "--enable-prefix-caching" in argv
    assert env["HF_HUB_OFFLINE"] == "1"  # nothing may download weights at run time


def test_command_defaults_leave_cores_to_the_os_and_size_the_kv_cache() -> None:
    argv, env = vllm.command("m", port=1)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert env["OMP_NUM_THREADS"] == "1"
    assert int(_flag(argv, "--kv-cache-memory-bytes")) == 512 * vllm.MiB
    assert "--enforce-eager" in argv


def test_command_options_pin_cores_and_pass_extra_args() -> None:
    options = vllm.EngineOptions(
        cpus="1", threads=2, max_model_len=4096, enforce_eager=False, extra_args=("--seed", "7")
    )
    argv, env = vllm.command("org/model", port=1, options=options)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "1"
    assert env["OMP_NUM_THREADS"] == "2"
    assert _flag(argv, "--max-model-len") == "4096"
    assert _flag(argv, "--served-model-name") == "model"  # default: the last path component
    assert "--enforce-eager" not in argv
    assert argv[-2:] == ["--seed", "7"]


class _FakeVllm(BaseHTTPRequestHandler):
    """Answers like vLLM once ``ready`` is set; 503 before (as during model load)."""

    ready = threading.Event()

    def do_GET(self) -> None:
        if not self.ready.is_set():
            self.send_response(503)
            self.end_headers()
            return
        body = {"/health": b"", "/v1/models": json.dumps({"data": [{"id": "tiny-llama"}]}).encode()}.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake_server() -> Iterator[tuple[str, threading.Event]]:
    ready = threading.Event()
    handler = type("Handler", (_FakeVllm,), {"ready": ready})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", ready
    finally:
        server.shutdown()
        server.server_close()


def test_wait_ready_returns_once_the_model_is_listed(fake_server: tuple[str, threading.Event]) -> None:
    url, ready = fake_server
    timer = threading.Timer(0.3, ready.set)
    timer.start()
    waited = vllm.wait_ready(url, "tiny-llama", deadline=10, interval=0.05)
    assert 0.2 < waited < 10
    assert not vllm.probe(url, "another-model")


async def test_wait_ready_async_does_the_same(fake_server: tuple[str, threading.Event]) -> None:
    url, ready = fake_server
    timer = threading.Timer(0.3, ready.set)
    timer.start()
    waited = await vllm.wait_ready_async(url, "tiny-llama", deadline=10, interval=0.05)
    assert ready.is_set() and 0.2 < waited < 10
    with pytest.raises(vllm.EngineNotReady, match="not ready after"):
        await vllm.wait_ready_async(url, "another-model", deadline=0.3, interval=0.05)


def test_wait_ready_fails_fast_with_the_log_tail_when_the_engine_exits(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    log.write_text("loading\nValueError: head_dim 16 is not supported\n")
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    started = time.monotonic()
    with pytest.raises(vllm.EngineNotReady, match=r"exited with 3(.|\n)*head_dim 16"):
        vllm.wait_ready("http://127.0.0.1:9", "m", deadline=30, process=process, log_path=log)
    assert time.monotonic() - started < 5


def test_wait_ready_gives_up_at_the_deadline() -> None:
    with pytest.raises(vllm.EngineNotReady, match="not ready after"):
        vllm.wait_ready("http://127.0.0.1:9", "m", deadline=0.3, interval=0.05)  # port 9: nothing listens


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    # A parent that starts a child, as vLLM's API server starts its engine core.
    script = (
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print('started', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"started\n"
    vllm.stop(process, timeout=5)
    assert process.returncode is not None
    deadline = time.monotonic() + 5
    while True:  # signal 0 probes whether any process is left in the group
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the child outlived stop()"
        time.sleep(0.05)


def test_command_hashes_blocks_deterministically_and_publishes_kv_events_when_asked() -> None:
    argv, _ = vllm.command("m", port=1)
    assert _flag(argv, "--prefix-caching-hash-algo") == "sha256_cbor"
    assert "--kv-events-config" not in argv
    argv, _ = vllm.command("m", port=1, options=vllm.EngineOptions(kv_events_endpoint="tcp://*:5557"))
    assert json.loads(_flag(argv, "--kv-events-config")) == {
        "enable_kv_cache_events": True,
        "publisher": "zmq",
        "endpoint": "tcp://*:5557",
        "topic": "kv",
    }
