"""Fault tests under load, each asserting what the clients saw (issue: fleet routing and resilience)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

import httpx

from inferstack.relay.sse import text_count
from inferstack_devstack import Stack, free_port
from inferstack_fake_engine import Behaviour, EngineConfig, running_engine

from .gateway_harness import running_gateway
from .test_relay_fake_engine import CHAT, configure, fleet, metric, recorded


async def load(client: httpx.AsyncClient, url: str, total: int, concurrency: int, stream: bool = True) -> list[bytes]:
    """Send ``total`` chat requests, ``concurrency`` at a time; return each body (or its status)."""
    queue = list(range(total))
    bodies: list[bytes] = []

    async def worker() -> None:
        while queue:
            queue.pop()
            resp = await client.post(url + "/v1/chat/completions", json={**CHAT, "stream": stream})
            bodies.append(resp.content if resp.status_code == 200 else b"status %d" % resp.status_code)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return bodies


def complete(body: bytes) -> bool:
    return body.endswith(b"data: [DONE]\n\n") and b'data: {"error"' not in body


async def test_a_replica_killed_mid_run_fails_no_request_that_had_not_started_streaming(tmp_path: Path) -> None:
    victim_stack = Stack(run_dir=tmp_path)
    port = free_port()
    # A real process, SIGKILLed with streams open: no goodbye, no graceful close.
    victim = victim_stack.start(
        "victim",
        [sys.executable, "-m", "inferstack_fake_engine", "--port", str(port), "--itl", "0.03", "--output-tokens", "20"],
        f"http://127.0.0.1:{port}",
    )
    try:
        await asyncio.to_thread(victim_stack.wait_ready, victim, "/health", 30)
        async with contextlib.AsyncExitStack() as stack:
            engines = [
                await stack.enter_async_context(
                    running_engine(EngineConfig(behaviour=Behaviour(output_tokens=20, itl=0.03)))
                )
                for _ in range(2)
            ]
            url, _ = await stack.enter_async_context(
                running_gateway([*engines, victim.url], routing_policy="round_robin", retry={"backoff_base": 0.001})
            )
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
            run = asyncio.create_task(load(client, url, total=90, concurrency=9))
            async with asyncio.timeout(10):
                while len(await recorded(client, victim.url)) < 6:
                    await asyncio.sleep(0.01)
            victim.process.send_signal(signal.SIGKILL)
            bodies = await run
    finally:
        victim_stack.stop()
    broken = [b for b in bodies if not complete(b)]
    assert len(bodies) == 90
    # Streams cut after their first tokens end with an error event; every other request succeeded.
    assert broken, "the kill should have cut at least one open stream"
    for body in broken:
        events = [e + b"\n\n" for e in body.split(b"\n\n") if e]
        assert any(text_count(e) for e in events), body
        assert events[-2].startswith(b'data: {"error"') and events[-1] == b"data: [DONE]\n\n"


async def test_a_replica_that_never_answers_times_out_is_ejected_and_traffic_moves() -> None:
    async with (
        fleet(
            Behaviour(hang=True),
            Behaviour(),
            timeouts={"first_byte": 1.0},  # a healthy replica under CI load must not miss it
            # Every concurrent request may retry: this test is about ejection, not the retry budget.
            retry={"backoff_base": 0.001, "min_retry_concurrency": 8},
            routing_policy="round_robin",
            outlier={"consecutive_failures": 2, "base_ejection": 30},
        ) as (url, (hung, good), _),
        httpx.AsyncClient(timeout=30) as client,
    ):
        bodies = await load(client, url, total=40, concurrency=8)
        assert all(complete(b) for b in bodies)
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_upstream_ejections_total") == 1
        assert metric(text, "inferstack_upstream_errors_total", kind="timeout") >= 2
        # After the ejection, the hung replica saw no more traffic: at most the attempts in flight then.
        assert len(await recorded(client, hung)) <= 8 + 2


async def test_a_replica_answering_500s_is_ejected_and_readmitted_after_it_heals() -> None:
    async with (
        fleet(
            Behaviour(error_status=500),
            Behaviour(),
            retry={"backoff_base": 0.001},
            routing_policy="round_robin",
            outlier={"consecutive_failures": 3, "base_ejection": 0.3},
        ) as (url, (sick, good), app),
        httpx.AsyncClient(timeout=30) as client,
    ):
        bodies = await load(client, url, total=30, concurrency=5, stream=False)
        assert all(not b.startswith(b"status") for b in bodies)
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_upstream_ejections_total") >= 1
        await configure(client, sick, error_status=0)
        before = len(await recorded(client, sick))
        endpoint = app.state.gateway.cluster.endpoints[sick]
        async with asyncio.timeout(10):  # the ejection runs out; the replica answers again
            while not endpoint.available(time.monotonic()):
                await asyncio.sleep(0.02)
        bodies = await load(client, url, total=10, concurrency=2, stream=False)
        assert all(not b.startswith(b"status") for b in bodies)
        assert len(await recorded(client, sick)) - before >= 4  # round robin sends it its share again
