"""Graceful drain of a real gateway process: SIGTERM during 50 open streams, all 50 complete."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inferstack_devstack import Stack, free_port

from .test_relay_fake_engine import CHAT, metric


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(run_dir=tmp_path)
    try:
        yield s
    finally:
        s.stop()


async def test_sigterm_fails_readiness_and_lets_open_streams_finish(stack: Stack) -> None:
    port = free_port()
    # 40 tokens, 50 ms apart: each stream lasts about 2 s, well past the SIGTERM.
    engine = stack.start(
        "fake",
        [sys.executable, "-m", "inferstack_fake_engine", "--port", str(port), "--itl", "0.05", "--output-tokens", "40"],
        f"http://127.0.0.1:{port}",
    )
    await asyncio.to_thread(stack.wait_ready, engine, "/health", 30)
    gw_port = free_port()
    gateway = stack.start(
        "gateway",
        [sys.executable, "-m", "inferstack", "serve"],
        f"http://127.0.0.1:{gw_port}",
        {
            "INFERSTACK_HOST": "127.0.0.1",
            "INFERSTACK_PORT": str(gw_port),
            "INFERSTACK_UPSTREAMS": engine.url,
            "INFERSTACK_AUTH_ENABLED": "false",
            "INFERSTACK_DRAIN_GRACE": "0.5",
            "INFERSTACK_DRAIN_DEADLINE": "30",
        },
    )
    await asyncio.to_thread(stack.wait_ready, gateway, "/readyz", 30)

    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, limits=httpx.Limits(max_connections=100)) as client:

        async def stream() -> bytes:
            resp = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
            return resp.content if resp.status_code == 200 else b"status %d" % resp.status_code

        streams = [asyncio.create_task(stream()) for _ in range(50)]
        async with asyncio.timeout(10):
            while metric((await client.get("/metrics")).text, "inferstack_requests_in_flight") != 50:
                await asyncio.sleep(0.02)
        gateway.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            while (await client.get("/readyz")).status_code != 503:
                await asyncio.sleep(0.01)
        bodies = await asyncio.gather(*streams)
    assert all(b.endswith(b"data: [DONE]\n\n") and b'"error"' not in b for b in bodies)
    assert await asyncio.to_thread(gateway.process.wait, 30) == 0
