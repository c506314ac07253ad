"""``python -m inferstack_fake_engine`` starts a real process that serves, and stops on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx

from inferstack_fake_engine.__main__ import parse_args


def test_flags_map_to_config() -> None:
    cfg, host, port = parse_args(
        [
            "--port",
            "9",
            "--model",
            "a",
            "--model",
            "b",
            "--itl",
            "0.01",
            "--sim",
            "--sim-max-num-seqs",
            "4",
            "--fail-after-tokens",
            "2",
        ]
    )
    assert (host, port, cfg.models) == ("127.0.0.1", 9, ("a", "b"))
    assert cfg.behaviour.itl == 0.01 and cfg.behaviour.fail_after_tokens == 2
    assert cfg.sim is not None and cfg.sim.max_num_seqs == 4
    assert parse_args([])[0].sim is None  # plain mode is the default


def test_process_serves_and_stops() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "inferstack_fake_engine", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "fake engine did not come up"
            time.sleep(0.05)
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/completions", json={"model": "fake-model", "prompt": "x", "max_tokens": 2}
        )
        assert r.json()["usage"]["completion_tokens"] == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
