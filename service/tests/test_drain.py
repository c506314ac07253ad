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


# A gateway process with one task that swallows every cancel (what a lost cancel looks like: session 12
# saw redis-py's nested timeouts turn one into a TimeoutError that a loop survives). Only the task is
# added; the server, its signals and its exit are the real ones.
STUBBORN_GATEWAY = """
import asyncio, contextlib
from inferstack import server

async def stubborn():
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass

real = server.create_app

def create_app(settings):
    app = real(settings)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a):
        async with inner(a) as state:
            app.state.stubborn = asyncio.create_task(stubborn())
            yield state

    app.router.lifespan_context = lifespan
    return app

server.create_app = create_app
server.serve()
"""


@pytest.mark.parametrize("signals", [2, 1], ids=["second_sigterm", "drain_deadline"])
async def test_a_task_that_refuses_its_cancel_does_not_keep_the_process_alive(stack: Stack, signals: int) -> None:
    from inferstack.server import FORCED_EXIT_WITHIN, SHUTDOWN_MARGIN

    port, admin_port = free_port(), free_port()
    gateway = stack.start(
        "gateway",
        [sys.executable, "-c", STUBBORN_GATEWAY],
        f"http://127.0.0.1:{port}",
        {
            "INFERSTACK_HOST": "127.0.0.1",
            "INFERSTACK_PORT": str(port),
            "INFERSTACK_ADMIN_PORT": str(admin_port),
            "INFERSTACK_UPSTREAMS": "",
            "INFERSTACK_AUTH_ENABLED": "false",
            # The second signal must come while the server still runs (in the grace period): once it has
            # returned, signals have their default action again and a second SIGTERM just kills.
            "INFERSTACK_DRAIN_GRACE": "30" if signals == 2 else "0",
            "INFERSTACK_DRAIN_DEADLINE": "0",
        },
    )
    await asyncio.to_thread(stack.wait_ready, gateway, "/healthz", 30)
    started = time.monotonic()
    gateway.process.send_signal(signal.SIGTERM)
    if signals == 2:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as probe, asyncio.timeout(10):
            # Draining (no replica here, so 503 either way: the status says which): the next one is the second.
            while (await probe.get("/readyz")).json()["status"] != "draining":
                await asyncio.sleep(0.01)
        gateway.process.send_signal(signal.SIGTERM)
    bound = FORCED_EXIT_WITHIN if signals == 2 else SHUTDOWN_MARGIN
    # Before the watchdog: asyncio.run waited for the task for ever (the process outlived any wait).
    code = await asyncio.to_thread(gateway.process.wait, bound + 15)
    assert code == 1
    assert time.monotonic() - started < bound + 5
    log = gateway.log_path.read_text()
    assert "shutdown did not end in time" in log
    assert f'"stage":"{"second signal" if signals == 2 else "shutdown"}"' in log
