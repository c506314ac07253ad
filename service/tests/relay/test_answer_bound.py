"""A non-stream answer larger than ``responses.max_bytes``, through a real gateway to fake engines:
the client gets an OpenAI error (502), the attempt is counted, not retried and not held against the
replica, and the request's slot is given back once."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from inferstack.exchange import Exchange
from inferstack.upstream.client import Pool, attempt
from inferstack.upstream.endpoint import Endpoint
from inferstack.upstream.failures import AttemptError
from inferstack_fake_engine import Behaviour

from ..test_relay_fake_engine import CHAT, configure, fleet, metric, recorded

LIMIT = 64 << 10


def big() -> Behaviour:
    """An answer of a few hundred kB, one Content-Length. A new one per engine and per run: the test
    changes its engines' behaviour (``configure``), which changes this object; a module-level one made
    the test fail when run again in one process (mutmut runs the clean tests, then forks each mutant's
    run from that process: every mutant was reported killed by it)."""
    return Behaviour(output_tokens=40_000)


async def test_an_answer_over_the_bound_is_a_502_not_retried_and_its_slot_released() -> None:
    async with (
        fleet(big(), big(), responses={"max_bytes": LIMIT}, routing_policy="round_robin") as (url, engines, _),
        httpx.AsyncClient(timeout=30) as client,
    ):
        # Round robin puts 4 and 3 on the two replicas: each at least outlier detection's consecutive
        # failures (3), so counted against a replica they would eject both; they are the request's doing.
        for _ in range(7):
            resp = await client.post(url + "/v1/chat/completions", json=CHAT)
            assert resp.status_code == 502
            error = resp.json()["error"]
            assert error["code"] == "upstream_response_too_large"
            assert error["type"] == "upstream_error"
            assert f"({LIMIT} bytes)" in error["message"] and "stream it" in error["message"]
        counts = [len(await recorded(client, e)) for e in engines]
        assert sorted(counts) == [3, 4]  # one attempt each (no retry), on both replicas
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_upstream_errors_total", kind="too_large") == 7
        assert metric(text, "inferstack_upstream_retries_total") == 0
        assert metric(text, "inferstack_upstream_ejections_total") == 0
        assert metric(text, "inferstack_requests_in_flight") == 0
        assert metric(text, "inferstack_model_demand") == 0  # held + in flight: released once, not twice
        assert metric(text, "inferstack_upstream_replicas", state="ready") == 2

        # The same answer streamed is relayed: a stream is never held whole.
        async with client.stream("POST", url + "/v1/chat/completions", json={**CHAT, "stream": True}) as stream:
            assert stream.status_code == 200
            size = sum([len(chunk) async for chunk in stream.aiter_bytes()])
        assert size > LIMIT
        # An answer under the bound passes, on the same replicas and pool.
        ok = await client.post(url + "/v1/chat/completions", json={**CHAT, "max_tokens": 5})
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 5

        # An error answer is read whole too (to make an OpenAI body of it): the same bound.
        for engine in engines:
            await configure(client, engine, error_status=400, error_body="x" * (2 * LIMIT))
        resp = await client.post(url + "/v1/chat/completions", json=CHAT)
        assert resp.status_code == 502 and resp.json()["error"]["code"] == "upstream_response_too_large"
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_upstream_errors_total", kind="too_large") == 8
        assert metric(text, "inferstack_requests_in_flight") == 0


async def test_the_attempt_closes_the_connection_of_an_answer_over_the_bound() -> None:
    # The attempt stops reading at the bound: the connection must go (left open, it stays busy in the
    # pool until the gateway stops, and the engine goes on writing into it), and the error says who
    # may retry it and whom it is held against: nobody.
    closed = asyncio.get_running_loop().create_future()

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
        piece = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
        with contextlib.suppress(ConnectionError):
            for _ in range(64):  # 1 MiB, four times the bound, then the end of the body
                writer.write(piece)
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            await reader.read()  # b"" once the gateway closes the connection
        closed.set_result(True)

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    pool = Pool(connect_timeout=2)
    try:
        ex = Exchange(request_id="r", upstream_id="u", endpoint="chat", started=time.perf_counter(), model="m")
        ex.body, ex.deadline = b'{"model":"m"}', time.monotonic() + 30
        by = asyncio.get_running_loop().time() + 10
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        with pytest.raises(AttemptError) as caught:
            await attempt(pool, Endpoint(url), "/v1/chat/completions", ex, by, max_bytes=256 << 10)
        assert (caught.value.kind, caught.value.retryable, caught.value.replica_fault) == ("too_large", False, False)
        assert caught.value.error.status == 502
        async with asyncio.timeout(5):
            assert await closed
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()
