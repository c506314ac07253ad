"""The request path's "must nots", each against real fake-engine processes and a real gateway.

A slow reader is not the replica's failure and holds no slot; a stream cut short is billed for what
was delivered; retries do not storm; the engine never sees the client's request id; every upstream
error reaches the client in OpenAI's shape; no text is ever repeated by a retry on another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from inferstack.filters import generate_key, hash_key
from inferstack.relay.sse import text_count
from inferstack_fake_engine import Behaviour, EngineConfig, running_engine

from .gateway_harness import GatewayURL, running_gateway
from .test_relay_fake_engine import CHAT, fleet, metric, recorded, sse_events
from .test_tenancy_api import bearer, key_file

STREAM = {**CHAT, "stream": True}


async def wait_for_metric(client: httpx.AsyncClient, url: GatewayURL, name: str, value: float, **labels: str) -> None:
    async with asyncio.timeout(10):
        while metric((await client.get(url.admin + "/metrics")).text, name, **labels) != value:
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def stalled_reader(url: str, body: dict[str, object], key: str) -> AsyncIterator[socket.socket]:
    """A client that sends a streaming request, reads its first bytes, then stops reading."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the gateway blocks soon
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, (host, int(port)))
        data = orjson.dumps(body)
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {key}\r\ncontent-length: {len(data)}\r\n\r\n"
        )
        await loop.sock_sendall(sock, head.encode() + data)
        async with asyncio.timeout(10):
            assert (await loop.sock_recv(sock, 1024)).startswith(b"HTTP/1.1 200")
        yield sock
    finally:
        sock.close()


async def test_a_client_that_stops_reading_frees_its_slots_and_is_not_the_replicas_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="inferstack.access")
    key = generate_key()
    keys = key_file(tmp_path / "keys.yaml", [{"key_sha256": hash_key(key), "tenant": "acme", "max_concurrency": 1}])
    # ~22 MB of events: far more than the socket buffers between the gateway and a client that stalls.
    engine_config = EngineConfig(max_model_len=1_000_000, behaviour=Behaviour(output_tokens=100_000))
    big = {**STREAM, "max_tokens": 100_000}
    async with (
        running_engine(engine_config) as engine,
        running_gateway(
            [engine],
            auth_enabled=True,
            keys_file=str(keys),
            timeouts={"idle": 0.5, "client_write": 0.5},
            outlier={"consecutive_failures": 1},
        ) as (url, _),
        httpx.AsyncClient(timeout=10) as client,
        stalled_reader(url, big, key),
    ):
        # While the stalled client is still connected, its request ends: the replica slot is freed...
        await wait_for_metric(client, url, "inferstack_requests_in_flight", 0)
        # ...so is the tenant's only concurrency slot, and the replica was neither blamed nor ejected.
        ok = await client.post(url + "/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert ok.status_code == 200, ok.text
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_upstream_ejections_total") == 0
        assert metric(text, "inferstack_upstream_errors_total") == 0
        assert metric(text, "inferstack_requests_total", status="499") == 1
    # The access line says why it ended: the client's writes timed out (not that it left, nor a 5xx).
    lines = [vars(r)["access"] for r in caplog.records if r.name == "inferstack.access"]
    assert [(line["status"], line["error"]) for line in lines] == [(499, "client_write_timeout"), (200, None)]


async def test_a_stream_the_client_leaves_is_billed_for_what_it_received_and_frees_its_slot_once(
    tmp_path: Path,
) -> None:
    key, admin = generate_key(), generate_key()
    keys = key_file(tmp_path / "keys.yaml", [{"key_sha256": hash_key(key), "tenant": "acme", "max_concurrency": 1}])
    async with (
        running_engine(EngineConfig(behaviour=Behaviour(output_tokens=400, itl=0.01))) as engine,
        running_gateway([engine], auth_enabled=True, keys_file=str(keys), admin_key=hash_key(admin)) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        received = 0
        async with client.stream("POST", "/v1/chat/completions", json=STREAM, headers=bearer(key)) as resp:
            async for line in resp.aiter_lines():
                received += text_count(line.encode() + b"\n\n")
                if received == 50:
                    break
        await wait_for_metric(client, url, "inferstack_requests_total", 1, status="499")
        report = (await client.get(url.admin + "/admin/usage", headers=bearer(admin))).json()
        (row,) = [r for r in report["data"] if r["tenant"] == "acme"]
        # Billed what was handed to the client: at least what it read, far from the 400 it never got.
        assert 50 <= row["completion_tokens"] < 400
        assert row["prompt_tokens"] > 0
        # The concurrency slot was released, exactly once: with one stream open, another request is 429.
        async with client.stream("POST", "/v1/chat/completions", json=STREAM, headers=bearer(key)) as open_one:
            assert open_one.status_code == 200
            second = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
            assert second.status_code == 429


async def test_a_slow_non_stream_answer_is_generated_once_not_once_per_replica() -> None:
    slow = Behaviour(first_byte_delay=2.0, output_tokens=4)  # vLLM answers a non-stream request when done
    async with (
        fleet(slow, slow, slow, timeouts={"first_byte": 0.5}, retry={"backoff_base": 0.001}) as (url, engines, _),
        httpx.AsyncClient(timeout=30) as client,
    ):
        started = time.monotonic()
        resp = await client.post(url + "/v1/chat/completions", json=CHAT)
        assert resp.status_code == 200, resp.text
        assert time.monotonic() - started >= 2.0
        assert sum([len(await recorded(client, e)) for e in engines]) == 1


async def test_a_non_stream_response_timeout_is_not_retried() -> None:
    async with (
        fleet(Behaviour(hang=True), Behaviour(hang=True), timeouts={"response": 0.3}) as (url, engines, _),
        httpx.AsyncClient(timeout=30) as client,
    ):
        resp = await client.post(url + "/v1/chat/completions", json=CHAT)
        assert resp.status_code == 504
        assert sum([len(await recorded(client, e)) for e in engines]) == 1


async def test_the_retry_budget_fails_fast_instead_of_retrying_and_counts_it() -> None:
    failing = Behaviour(error_status=503)
    async with (
        fleet(failing, failing, retry={"budget_percent": 0, "min_retry_concurrency": 0}) as (url, engines, _),
        httpx.AsyncClient(timeout=30) as client,
    ):
        for _ in range(3):
            assert (await client.post(url + "/v1/chat/completions", json=CHAT)).status_code == 502
        assert sum([len(await recorded(client, e)) for e in engines]) == 3
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_retry_budget_exhausted_total", model="fake-model") == 3
        assert metric(text, "inferstack_upstream_retries_total") == 0


async def test_the_engine_gets_our_request_id_and_the_client_gets_its_own_back() -> None:
    async with fleet(Behaviour(output_tokens=2)) as (url, (engine,), _), httpx.AsyncClient() as client:
        answers = [
            await client.post(url + "/v1/chat/completions", json=body, headers={"x-request-id": "same"})
            for body in (CHAT, STREAM)
        ]
        assert [a.headers["x-request-id"] for a in answers] == ["same", "same"]
        sent = [r["headers"]["x-request-id"] for r in await recorded(client, engine)]
        assert len(sent) == len(set(sent)) == 2 and "same" not in sent
        # Without a client id the client gets ours, the one the engine saw.
        mine = await client.post(url + "/v1/chat/completions", json=CHAT)
        assert mine.headers["x-request-id"] == (await recorded(client, engine))[-1]["headers"]["x-request-id"]


async def test_the_engine_is_not_offered_compressed_answers() -> None:
    async with fleet(Behaviour(output_tokens=2)) as (url, (engine,), _), httpx.AsyncClient() as client:
        resp = await client.post(url + "/v1/chat/completions", json=STREAM, headers={"accept-encoding": "gzip"})
        assert resp.status_code == 200
        assert "accept-encoding" not in (await recorded(client, engine))[-1]["headers"]


@pytest.mark.parametrize(
    ("status", "body", "want_status", "want_type", "want_message"),
    [
        (404, '{"detail": "Not Found"}', 404, "invalid_request_error", "Not Found"),
        (400, "bad things", 400, "invalid_request_error", "bad things"),
        (422, '{"detail": [{"loc": ["body"], "msg": "field required"}]}', 422, "invalid_request_error", None),
        (401, '{"error": {"message": "no key", "type": "auth", "code": 401}}', 502, "upstream_error", None),
    ],
)
async def test_every_upstream_error_reaches_the_client_in_openai_shape(
    status: int, body: str, want_status: int, want_type: str, want_message: str | None
) -> None:
    async with fleet(Behaviour(error_status=status, error_body=body)) as (url, _, _a), httpx.AsyncClient() as client:
        resp = await client.post(url + "/v1/embeddings", json={"model": "fake-model", "input": "x"})
        assert resp.status_code == want_status
        assert resp.headers["content-type"] == "application/json"
        error = resp.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == want_type and isinstance(error["message"], str) and error["message"]
        if want_message is not None:
            assert error["message"] == want_message


async def test_a_stream_that_breaks_after_text_is_never_retried_on_the_other_replica() -> None:
    breaking = Behaviour(output_tokens=8, fail_after_tokens=3)
    async with (
        fleet(breaking, breaking, routing_policy="round_robin", retry={"backoff_base": 0.001}) as (url, engines, _),
        httpx.AsyncClient(timeout=10) as client,
    ):
        for _ in range(2):  # round robin: each replica gets to be the first one once
            resp = await client.post(url + "/v1/chat/completions", json=STREAM)
            events = sse_events(resp.content)
            assert sum(text_count(e) for e in events) == 3
            assert events[-2].startswith(b'data: {"error"')
        assert [len(await recorded(client, e)) for e in engines] == [1, 1]
