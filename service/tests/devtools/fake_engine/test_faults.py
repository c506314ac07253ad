"""Failure injection, switched on and off at run time through POST /_fake/config."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from inferstack_fake_engine import EngineConfig, running_engine

from .conftest import sse_events

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}


async def test_error_status_then_recovery(client: httpx.AsyncClient) -> None:
    assert (await client.post("/_fake/config", json={"error_status": 500})).status_code == 200
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 500 and r.json()["error"]["code"] == 500
    await client.post("/_fake/config", json={"error_status": 0})
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_error_rate_is_seeded() -> None:
    async def statuses() -> list[int]:
        cfg = EngineConfig(seed=7)
        cfg.behaviour.update({"error_status": 503, "error_rate": 0.5})
        async with running_engine(cfg) as url, httpx.AsyncClient(base_url=url) as c:
            return [(await c.post("/v1/chat/completions", json=CHAT)).status_code for _ in range(20)]

    first = await statuses()
    assert set(first) == {200, 503}
    assert first == await statuses()


async def test_config_rejects_unknown_and_bad_fields(client: httpx.AsyncClient) -> None:
    r = await client.post("/_fake/config", json={"nope": 1})
    assert r.status_code == 400 and "unknown field" in r.json()["error"]["message"]
    r = await client.post("/_fake/config", json={"itl": 0.5, "fail_mode": "explode"})
    assert r.status_code == 400
    assert (await client.get("/_fake/config")).json()["itl"] == 0.0  # nothing applied


async def test_hang_never_answers(client: httpx.AsyncClient) -> None:
    await client.post("/_fake/config", json={"hang": True})
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/v1/chat/completions", json=CHAT, timeout=0.3)


async def test_disconnect_drops_the_connection(client: httpx.AsyncClient) -> None:
    await client.post("/_fake/config", json={"disconnect": True})
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/v1/chat/completions", json=CHAT)


async def test_slow_first_byte_delays_headers(client: httpx.AsyncClient) -> None:
    await client.post("/_fake/config", json={"first_byte_delay": 0.2})
    start = time.monotonic()
    async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
        assert time.monotonic() - start >= 0.2
        assert r.status_code == 200


async def _stream_until_failure(client: httpx.AsyncClient, read_timeout: float = 5.0) -> tuple[bytes, Exception | None]:
    got = b""
    try:
        async with client.stream(
            "POST", "/v1/chat/completions", json={**CHAT, "stream": True}, timeout=read_timeout
        ) as r:
            async for chunk in r.aiter_raw():
                got += chunk
    except (httpx.RemoteProtocolError, httpx.ReadTimeout) as exc:
        return got, exc
    return got, None


async def test_fail_mid_stream_by_closing(client: httpx.AsyncClient) -> None:
    await client.post("/_fake/config", json={"fail_after_tokens": 3, "fail_mode": "close", "itl": 0.01})
    got, exc = await _stream_until_failure(client)
    assert isinstance(exc, httpx.RemoteProtocolError)
    assert got.count(b'"content":"') == 1 + 3  # role chunk + 3 tokens, then the connection drops
    assert b"[DONE]" not in got


async def test_fail_mid_stream_with_error_event(client: httpx.AsyncClient) -> None:
    await client.post("/_fake/config", json={"fail_after_tokens": 2, "fail_mode": "error_event"})
    got, exc = await _stream_until_failure(client)
    assert exc is None
    events = sse_events(got)
    assert events[-2]["error"]["code"] == 500 and events[-1] == "[DONE]"
    assert len(events) == 1 + 2 + 2


async def test_stall_mid_stream_keeps_connection_open(client: httpx.AsyncClient) -> None:
    await client.post("/_fake/config", json={"fail_after_tokens": 1, "fail_mode": "stall"})
    got, exc = await _stream_until_failure(client, read_timeout=0.3)
    assert isinstance(exc, httpx.ReadTimeout)
    assert got.count(b'"content":"') == 2


async def test_pacing_follows_ttft_and_itl(client: httpx.AsyncClient) -> None:
    await client.post("/_fake/config", json={"ttft": 0.1, "itl": 0.02})
    arrivals: list[float] = []
    start = time.monotonic()
    async with client.stream(
        "POST", "/v1/completions", json={"model": "fake-model", "prompt": "x", "max_tokens": 6, "stream": True}
    ) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 6
    # Bounds from the send only: the engine sleeps ttft, then keeps a schedule of one token per itl from
    # its first token, and no sleep ends early, so these hold however loaded the machine is. The client's
    # own gaps do not: the client and the engine share this event loop, and a first token read 10 ms
    # late (a preemption, a GC pause) made the later ones arrive bunched, under the 0.09 s once asserted.
    assert arrivals[0] >= 0.1
    assert arrivals[-1] >= 0.1 + 5 * 0.02


async def test_client_disconnect_frees_the_slot(client: httpx.AsyncClient, engine: str) -> None:
    await client.post("/_fake/config", json={"ttft": 30})
    task = asyncio.create_task(client.post("/v1/chat/completions", json=CHAT))
    await _until(client, lambda running: running == 1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await _until(client, lambda running: running == 0)


async def _until(client: httpx.AsyncClient, ok: object, deadline: float = 3.0) -> None:
    """Poll vllm:num_requests_running until ``ok(value)`` holds, failing after ``deadline`` seconds."""
    assert callable(ok)
    end = time.monotonic() + deadline
    while True:
        text = (await client.get("/metrics")).text
        line = next(x for x in text.splitlines() if x.startswith("vllm:num_requests_running{"))
        if ok(float(line.rsplit(" ", 1)[1])):
            return
        assert time.monotonic() < end, line
        await asyncio.sleep(0.01)
