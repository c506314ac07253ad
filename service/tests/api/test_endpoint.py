"""The OpenAI endpoint's own bookkeeping (``api/openai.py``): request ids, what a request is logged and
counted as, and the connection it leaves behind. A real gateway and fake engine in the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferstack.filters import generate_key, hash_key
from inferstack_fake_engine import Behaviour, EngineConfig, running_engine

from ..gateway_harness import GatewayURL, free_port, running_gateway
from ..test_relay_fake_engine import CHAT, metric, recorded
from ..test_tenancy_api import bearer, key_file
from ..waiting import until


@contextlib.asynccontextmanager
async def gateway(behaviour: Behaviour | None = None) -> AsyncIterator[tuple[GatewayURL, str, httpx.AsyncClient]]:
    async with (
        running_engine(EngineConfig(behaviour=behaviour or Behaviour())) as engine,
        running_gateway([engine]) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield url, engine, client


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [vars(r)["access"] for r in caplog.records if r.name == "inferstack.access"]


async def test_a_long_request_id_is_cut_to_128_characters_and_none_given_gets_the_gateways(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="inferstack.access")
    async with gateway() as (_, engine, client):
        long = await client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "r" * 300})
        mine = await client.post("/v1/chat/completions", json=CHAT)
        sent = [r["headers"]["x-request-id"] for r in await recorded(client, engine)]
    assert long.headers["x-request-id"] == "r" * 128
    (cut, ours) = access_lines(caplog)
    assert cut["request_id"] == "r" * 128
    # Without one, the client gets the id the engine got: one per request.
    assert mine.headers["x-request-id"] == ours["request_id"] == ours["upstream_request_id"] == sent[1]
    assert sent[0] != sent[1]


async def test_request_ids_are_unique_across_endpoints_and_gateways() -> None:
    # Each endpoint counts from 1: its random prefix keeps the first request of each apart, and
    # keeps apart the ids of gateway replicas (or restarts) logging to one place.
    ids = []
    for _ in range(2):
        async with gateway() as (_, _, client):
            for path, body in [
                ("/v1/chat/completions", CHAT),
                ("/v1/completions", {"model": "fake-model", "prompt": "x"}),
            ]:
                ids.append((await client.post(path, json=body)).headers["x-request-id"])
    assert len(set(ids)) == 4


async def test_a_request_is_logged_with_its_stream_flag_and_a_duration_within_the_clients(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="inferstack.access")
    async with gateway(Behaviour(ttft=0.05)) as (url, _, client):
        began = time.perf_counter()
        whole = await client.post("/v1/chat/completions", json=CHAT)
        elapsed = time.perf_counter() - began
        text = (await client.get(url.admin + "/metrics")).text
    assert whole.status_code == 200
    (line,) = access_lines(caplog)
    # No `stream` field: not a stream (false, not null).
    assert line["stream"] is False
    # The engine's 50 ms before its first token are in it; the client's own time around it is not.
    assert 0.05 <= line["duration_ms"] / 1000 <= elapsed
    seconds = metric(text, "inferstack_request_duration_seconds_sum", endpoint="chat", model="fake-model")
    assert 0.05 <= seconds <= elapsed
    # Counted once, under the request's model (the dashboards' per-model rate and latency).
    assert metric(text, "inferstack_requests_total", endpoint="chat", model="fake-model", status="200") == 1


async def test_errors_are_logged_by_their_code_or_else_their_type(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="inferstack.access")
    async with gateway() as (_, _, client):
        unknown = await client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
        not_json = await client.post("/v1/chat/completions", content=b"{")
    assert (unknown.status_code, not_json.status_code) == (404, 400)
    assert [(line["status"], line["error"]) for line in access_lines(caplog)] == [
        (404, "model_not_found"),
        (400, "invalid_request_error"),  # no code: its type
    ]


async def test_a_client_that_leaves_before_its_body_is_in_is_a_499_and_reaches_no_engine(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="inferstack.access")
    async with gateway() as (url, engine, client):
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\nexpect: 100-continue\r\n\r\n"
        writer.write(head)
        # uvicorn sends 100 Continue when the endpoint first asks for the body: it is reading it now.
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b'{"model": ')
        await writer.drain()
        writer.close()
        await until(lambda: bool(access_lines(caplog)), "the access line")
        assert await recorded(client, engine) == []
        text = (await client.get(url.admin + "/metrics")).text
    (line,) = access_lines(caplog)
    assert (line["status"], line["error"]) == (499, None)
    assert metric(text, "inferstack_requests_total", status="499") == 1


async def test_a_client_that_leaves_while_the_engine_works_is_a_client_disconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="inferstack.access")
    async with gateway(Behaviour(hang=True)) as (url, engine, client):
        asking = asyncio.create_task(client.post("/v1/chat/completions", json=CHAT))

        async def reached() -> bool:
            return bool(await recorded(client, engine))

        await until(reached, "the request at the engine")
        asking.cancel()  # httpx closes the connection
        await until(lambda: bool(access_lines(caplog)), "the access line")
        text = (await client.get(url.admin + "/metrics")).text
    (line,) = access_lines(caplog)
    assert (line["status"], line["error"], line["model"]) == (499, "client_disconnect", "fake-model")
    assert metric(text, "inferstack_upstream_errors_total", model="fake-model", kind="client_disconnect") == 1


async def test_a_connection_closed_after_its_answer_closes_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    """The endpoint hands uvicorn's per-request event back when it is done: uvicorn sets it again
    when the connection closes, after the request, and an error there is logged by asyncio."""
    async with gateway() as (url, _, _):
        # TRACE: uvicorn logs each connection's end. Set once the server runs: at start, TRACE would
        # have uvicorn wrap the app in its message logger, which hides uvicorn's cycle from the endpoint.
        caplog.set_level(5, logger="uvicorn.error")
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        body = b'{"model": "fake-model", "prompt": "x"}'
        writer.write(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        host, port = writer.get_extra_info("sockname")[:2]
        client = f"{host}:{port} - "
        writer.close()

        def lost() -> bool:
            return any(r.getMessage() == client + "HTTP connection lost" for r in caplog.records)

        await until(lost, "the server to see the connection close")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


async def test_stream_null_is_openais_not_given_a_whole_answer(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="inferstack.access")
    async with gateway() as (_, engine, client):
        resp = await client.post("/v1/chat/completions", json={**CHAT, "stream": None})
        (sent,) = await recorded(client, engine)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json" and resp.json()["choices"]
    assert sent["body"]["stream"] is None  # passed on as sent: vLLM reads null as false too
    (line,) = access_lines(caplog)
    assert line["stream"] is False


async def test_a_request_that_reached_no_engine_gives_back_its_reserved_tokens(tmp_path: Path) -> None:
    """No replica (503 after the hold): the tokens reserved against the key's per-minute limit are
    given back at once, so the next such request fits; a request an engine saw keeps its reservation
    until its usage is known (tested in filters/)."""
    key = generate_key()
    keys = key_file(tmp_path / "keys.yaml", [{"key_sha256": hash_key(key), "tenant": "acme", "tpm": 100}])
    dead = f"http://127.0.0.1:{free_port()}"
    settings = {"auth_enabled": True, "keys_file": str(keys), "models": ["m"], "hold_timeout": 0.1}
    async with (
        running_gateway([dead], wait_ready=False, **settings) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        body = {"model": "m", "prompt": "x", "max_tokens": 60}  # reserves more than half the minute's 100
        statuses = [
            (await client.post("/v1/completions", json=body, headers=bearer(key))).status_code for _ in range(3)
        ]
    assert statuses == [503, 503, 503]


@contextlib.asynccontextmanager
async def metered(tmp_path: Path, output_tokens: int) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """A client of a gateway whose one key (tenant acme) has 100 tokens a minute, and that key's header;
    the engine answers ``output_tokens`` (fewer if ``max_tokens`` says so)."""
    key = generate_key()
    keys = key_file(tmp_path / "keys.yaml", [{"key_sha256": hash_key(key), "tenant": "acme", "tpm": 100}])
    async with (
        running_engine(EngineConfig(behaviour=Behaviour(output_tokens=output_tokens))) as engine,
        running_gateway([engine], auth_enabled=True, keys_file=str(keys)) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield client, bearer(key)


async def test_a_request_an_engine_answered_is_charged_its_usage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="inferstack.access")
    async with metered(tmp_path, output_tokens=50) as (client, auth):
        body = {"model": "fake-model", "prompt": "x", "max_tokens": 50}
        first = await client.post("/v1/completions", json=body, headers=auth)
        second = await client.post("/v1/completions", json=body, headers=auth)
    assert first.status_code == 200 and first.json()["usage"]["completion_tokens"] == 50
    # The first used more than half of the minute's 100 tokens: the second does not fit.
    assert (second.status_code, second.json()["error"]["code"]) == (429, "rate_limit_exceeded")
    # Both lines name the key's tenant: the refusal too (admission raised it after reading the key).
    lines = access_lines(caplog)
    assert [(line["tenant"], line["status"]) for line in lines] == [("acme", 200), ("acme", 429)]


async def test_an_answer_shorter_than_its_max_tokens_is_charged_what_it_used(tmp_path: Path) -> None:
    # Admission reserves max_tokens; the engine's usage settles it. Without the usage the whole
    # reservation would stand, and the second request (60 more of the minute's 100) would not fit.
    async with metered(tmp_path, output_tokens=5) as (client, auth):
        body = {"model": "fake-model", "prompt": "x", "max_tokens": 60}
        answers = [await client.post("/v1/completions", json=body, headers=auth) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json()["usage"]["completion_tokens"] for a in answers] == [5, 5]


async def test_a_model_whose_weights_changed_is_not_answered_from_the_cache() -> None:
    # The cache key holds the revision the replicas list for the model (their cards' root): an answer
    # of the old weights must not be served once a replica with new weights took the model over.
    body = {**CHAT, "temperature": 0}
    async with (
        running_engine(EngineConfig(models=("/weights/v1", "fake-model"))) as old,
        running_engine(EngineConfig(models=("/weights/v2", "fake-model"))) as new,
        running_gateway([old]) as (url, app),
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        cached = [await client.post("/v1/chat/completions", json=body) for _ in range(2)]
        cluster = app.state.gateway.cluster
        cluster.set_urls([new])  # discovery's word: the old replica left, one with new weights came
        await until(lambda: cluster.revision("fake-model") == "/weights/v2", "the new replica's card")
        fresh = await client.post("/v1/chat/completions", json=body)
        sent = len(await recorded(client, new))
    assert [a.headers["x-inferstack-cache"] for a in cached] == ["miss", "hit"]
    assert (fresh.status_code, fresh.headers["x-inferstack-cache"], sent) == (200, "miss", 1)
