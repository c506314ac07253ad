"""Graceful drain of a real gateway process: SIGTERM during 50 open streams, all 50 complete; during the
grace period the listener stays open and serves new requests (load balancers are still sending them);
and the ways out of a drain (a second SIGTERM, a zero deadline) that must not wait for them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inferstack_devstack import Service, Stack, free_port

from .test_relay_fake_engine import CHAT, metric


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(run_dir=tmp_path)
    try:
        yield s
    finally:
        s.stop()


async def start(stack: Stack, tokens: int, grace: str, deadline: str) -> Service:
    """A fake engine streaming ``tokens`` tokens 50 ms apart, and a gateway process in front of it."""
    port = free_port()
    argv = [sys.executable, "-m", "inferstack_fake_engine", "--port", str(port), "--itl", "0.05"]
    engine = stack.start("fake", [*argv, "--output-tokens", str(tokens)], f"http://127.0.0.1:{port}")
    await asyncio.to_thread(stack.wait_ready, engine, "/health", 30)
    gw_port, admin_port = free_port(), free_port()
    gateway = stack.start(
        "gateway",
        [sys.executable, "-m", "inferstack", "serve"],
        f"http://127.0.0.1:{gw_port}",
        {
            "INFERSTACK_HOST": "127.0.0.1",
            "INFERSTACK_PORT": str(gw_port),
            "INFERSTACK_ADMIN_PORT": str(admin_port),
            "INFERSTACK_UPSTREAMS": engine.url,
            "INFERSTACK_AUTH_ENABLED": "false",
            "INFERSTACK_DRAIN_GRACE": grace,
            "INFERSTACK_DRAIN_DEADLINE": deadline,
        },
    )
    gateway.admin_url = f"http://127.0.0.1:{admin_port}"
    await asyncio.to_thread(stack.wait_ready, gateway, "/readyz", 30)
    return gateway


async def test_sigterm_fails_readiness_and_lets_open_streams_finish(stack: Stack) -> None:
    # 40 tokens, 50 ms apart: each stream lasts about 2 s, well past the SIGTERM.
    gateway = await start(stack, tokens=40, grace="0.5", deadline="30")
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, limits=httpx.Limits(max_connections=100)) as client:

        async def stream() -> bytes:
            resp = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
            return resp.content if resp.status_code == 200 else b"status %d" % resp.status_code

        streams = [asyncio.create_task(stream()) for _ in range(50)]
        async with asyncio.timeout(10):
            scrape = gateway.admin_url + "/metrics"
            while metric((await client.get(scrape)).text, "inferstack_requests_in_flight") != 50:
                await asyncio.sleep(0.02)
        gateway.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            while (await client.get("/readyz")).status_code != 503:
                await asyncio.sleep(0.01)
        bodies = await asyncio.gather(*streams)
    assert all(b.endswith(b"data: [DONE]\n\n") and b'"error"' not in b for b in bodies)
    assert await asyncio.to_thread(gateway.process.wait, 30) == 0


async def test_a_request_sent_during_the_grace_period_is_served(stack: Stack) -> None:
    gateway = await start(stack, tokens=4, grace="5", deadline="5")
    gateway.process.send_signal(signal.SIGTERM)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as probe:
        async with asyncio.timeout(5):
            while (await probe.get("/readyz")).status_code != 503:
                await asyncio.sleep(0.01)
    # A new connection, after readiness has failed: the listener must still accept and answer it.
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        resp = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert resp.status_code == 200
    assert resp.content.endswith(b"data: [DONE]\n\n")
    assert gateway.process.poll() is None, "the gateway exited before its grace period ended"
    assert await asyncio.to_thread(gateway.process.wait, 30) == 0


@pytest.mark.parametrize(("deadline", "signals"), [("30", 2), ("0", 1)], ids=["second_sigterm", "zero_deadline"])
async def test_a_second_sigterm_or_a_zero_deadline_does_not_wait_for_open_streams(
    stack: Stack, deadline: str, signals: int
) -> None:
    # 400 tokens, 50 ms apart: a 20 s stream that a drain would wait for.
    gateway = await start(stack, tokens=400, grace="0.2", deadline=deadline)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        stream = asyncio.create_task(client.post("/v1/chat/completions", json={**CHAT, "stream": True}))
        async with asyncio.timeout(10):
            while metric((await client.get(gateway.admin_url + "/metrics")).text, "inferstack_requests_in_flight") != 1:
                await asyncio.sleep(0.02)
        for _ in range(signals):
            gateway.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
        started = time.monotonic()
        await asyncio.to_thread(gateway.process.wait, 10)
        assert time.monotonic() - started < 5, "the gateway waited for the open stream"
        with contextlib.suppress(httpx.HTTPError):
            await stream
