"""The request path against fake engines: relay, usage, retries, timeouts, cancellation, faults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from inferstack.relay.sse import text_count
from inferstack_fake_engine import Behaviour, EngineConfig, running_engine

from .gateway_harness import GatewayURL, running_gateway
from .stand_in import serving

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "Hello there"}]}


@contextlib.asynccontextmanager
async def fleet(*behaviours: Behaviour, **gateway: Any) -> AsyncIterator[tuple[GatewayURL, list[str], Any]]:
    async with contextlib.AsyncExitStack() as stack:
        engines = [await stack.enter_async_context(running_engine(EngineConfig(behaviour=b))) for b in behaviours]
        url, app = await stack.enter_async_context(running_gateway(engines, **gateway))
        yield url, engines, app


async def recorded(client: httpx.AsyncClient, engine: str) -> list[dict[str, Any]]:
    return list((await client.get(engine + "/_fake/requests")).json())


async def configure(client: httpx.AsyncClient, engine: str, **changes: Any) -> None:
    resp = await client.post(engine + "/_fake/config", json=changes)
    assert resp.status_code == 200, resp.text


def sse_events(raw: bytes) -> list[bytes]:
    return [e + b"\n\n" for e in raw.split(b"\n\n") if e]


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        named = line.startswith((name + "{", name + " "))
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# An answer no JSON encoder writes: odd spacing and key order, escapes, numbers a re-encoding would change.
ODD_ANSWER = (
    b'{ "id":"chatcmpl-1",  "object" : "chat.completion","created":1,"model":"fake-model",\n'
    b' "choices":[{"index":0,"message":{"role":"assistant","content":"caf\\u00e9 \xc3\xa9 \\/"},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5},'
    b'"x":1.50,"y":1E+2,"big":18446744073709551617}\n'
)


@contextlib.asynccontextmanager
async def scripted_engine(
    chat: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A healthy upstream serving ``fake-model`` whose chat completions ``chat`` answers."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="")

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-model"}]})

    app = web.Application()
    app.router.add_get("/health", ok)
    app.router.add_get("/metrics", ok)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    async with serving(app) as url:
        yield url


@contextlib.asynccontextmanager
async def fixed_answer_engine(answer: bytes) -> AsyncIterator[str]:
    """An upstream that answers every chat completion with ``answer``, byte for byte (and is healthy)."""

    async def completion(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answer, content_type="application/json")

    async with scripted_engine(completion) as url:
        yield url


async def test_non_stream_answers_pass_through_byte_for_byte() -> None:
    async with fleet(Behaviour(output_tokens=5)) as (url, (engine,), _), httpx.AsyncClient() as client:
        body = {**CHAT, "temperature": 0.3, "top_k": 5, "guided_choice": ["a", "b"], "vllm_xargs": {"k": 1}}
        via = await client.post(url + "/v1/chat/completions", json=body, headers={"x-request-id": "req-1"})
        assert via.status_code == 200
        sent = (await recorded(client, engine))[-1]
        # Unknown fields (vLLM's extensions) reach the engine untouched, as JSON (vLLM's FastAPI reads
        # the body as JSON only when it says so; media types are case-insensitive).
        assert sent["body"] == body
        assert sent["headers"]["content-type"].lower() == "application/json"
        assert via.headers["x-request-id"] == "req-1"
    async with (
        fixed_answer_engine(ODD_ANSWER) as engine,
        running_gateway([engine]) as (url, _),
        httpx.AsyncClient() as client,
    ):
        for _ in range(2):  # the second answer comes from the response cache (temperature 0)
            via = await client.post(url + "/v1/chat/completions", json={**CHAT, "temperature": 0})
            assert via.content == ODD_ANSWER
            assert via.headers["content-length"] == str(len(ODD_ANSWER))
        assert via.headers["x-inferstack-cache"] == "hit"


async def test_stream_relays_events_unchanged_and_strips_only_the_usage_it_added() -> None:
    async with fleet(Behaviour(output_tokens=4)) as (url, (engine,), _), httpx.AsyncClient() as client:
        plain = await client.post(url + "/v1/chat/completions", json={**CHAT, "stream": True})
        upstream_body = (await recorded(client, engine))[-1]["body"]
        assert upstream_body["stream_options"] == {"include_usage": True}
        events = sse_events(plain.content)
        assert events[-1] == b"data: [DONE]\n\n"
        assert not any(b'"usage":{' in e for e in events)
        assert sum(text_count(e) for e in events) == 4

        asked = await client.post(
            url + "/v1/chat/completions",
            json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
        )
        usage_events = [e for e in sse_events(asked.content) if b'"usage":{' in e]
        assert len(usage_events) == 1
        usage = orjson.loads(usage_events[0][6:])["usage"]
        # Both streams were counted, though the client saw usage only once.
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_completion_tokens_total", model="fake-model") == 2 * usage["completion_tokens"]
        assert metric(text, "inferstack_prompt_tokens_total", model="fake-model") == 2 * usage["prompt_tokens"]
        assert metric(text, "inferstack_time_to_first_token_seconds_count", endpoint="chat") == 2
        assert metric(text, "inferstack_inter_token_latency_seconds_count", endpoint="chat") == 2 * 3


async def test_a_stream_is_relayed_before_it_ends() -> None:
    # The engine sends two tokens and then stalls forever: only a relay without buffering delivers them.
    async with fleet(Behaviour(output_tokens=10, fail_after_tokens=2, fail_mode="stall")) as (url, (engine,), _):
        async with httpx.AsyncClient(timeout=10) as client:
            async with client.stream(
                "POST", url + "/v1/completions", json={"model": "fake-model", "prompt": "hi", "stream": True}
            ) as resp:
                texts = 0
                async for line in resp.aiter_lines():
                    if line.startswith('data: {"') and '"text":"' in line:
                        texts += 1
                    if texts == 2:
                        break
            assert texts == 2


async def test_a_client_that_leaves_cancels_the_upstream_request() -> None:
    # 1000 tokens at 50 ms: the engine would be busy for 50 s unless the gateway cancels it.
    async with fleet(Behaviour(output_tokens=1000, itl=0.05)) as (url, (engine,), _):
        async with httpx.AsyncClient(timeout=10) as client:
            async with client.stream("POST", url + "/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
                async for line in resp.aiter_lines():
                    if '"content":"' in line:
                        break
                running = metric((await client.get(engine + "/metrics")).text, "vllm:num_requests_running")
                assert running == 1
            async with asyncio.timeout(5):
                while metric((await client.get(engine + "/metrics")).text, "vllm:num_requests_running") != 0:
                    await asyncio.sleep(0.02)
            async with asyncio.timeout(5):
                while metric((await client.get(url.admin + "/metrics")).text, "inferstack_requests_in_flight") != 0:
                    await asyncio.sleep(0.02)
            text = (await client.get(url.admin + "/metrics")).text
            assert metric(text, "inferstack_requests_total", status="499") == 1


async def test_5xx_is_retried_on_another_replica_and_the_bad_one_is_ejected() -> None:
    async with (
        # Active checks only at start: a passing /health resets the consecutive-failure count, and
        # one landing between the failures (every 0.2 s otherwise) would make the ejection late.
        fleet(
            Behaviour(error_status=500),
            Behaviour(),
            retry={"backoff_base": 0.001},
            health={"interval": 60, "timeout": 1.0},
        ) as (url, (bad, good), _),
        httpx.AsyncClient() as client,
    ):
        for _ in range(8):
            resp = await client.post(url + "/v1/chat/completions", json=CHAT)
            assert resp.status_code == 200, resp.text
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_upstream_errors_total", kind="http_5xx") == 3
        assert metric(text, "inferstack_upstream_ejections_total") == 1
        assert metric(text, "inferstack_upstream_replicas", state="ejected") == 1
        assert len(await recorded(client, bad)) == 3  # ejected after 3 consecutive failures


async def test_a_single_failing_replica_gives_502_with_an_openai_error() -> None:
    async with fleet(Behaviour(error_status=503), retry={"backoff_base": 0.001}) as (url, _, _app):
        async with httpx.AsyncClient() as client:
            resp = await client.post(url + "/v1/chat/completions", json=CHAT)
            assert resp.status_code == 502
            error = resp.json()["error"]
            assert (error["code"], error["message"]) == ("bad_gateway", "The upstream replica failed with status 503.")


async def test_upstream_client_errors_keep_their_status_and_message_in_openais_vocabulary() -> None:
    async with fleet(Behaviour()) as (url, (engine,), _), httpx.AsyncClient() as client:
        for body in ({**CHAT, "max_tokens": 10**6}, {**CHAT, "max_tokens": 10**6, "stream": True}):
            via = await client.post(url + "/v1/chat/completions", json=body)
            direct = await client.post(engine + "/v1/chat/completions", json=body)
            assert via.status_code == direct.status_code == 400  # a stream refused is an error, not a stream
            theirs = direct.json()["error"]  # vLLM's vocabulary: "BadRequestError", code 400
            assert (theirs["type"], theirs["code"]) == ("BadRequestError", 400)
            ours = {"message": theirs["message"], "type": "invalid_request_error", "param": "max_tokens", "code": None}
            assert via.json() == {"error": ours}
            assert via.headers["content-type"] == "application/json"


async def test_a_hung_replica_times_out_with_504() -> None:
    async with fleet(Behaviour(hang=True), timeouts={"response": 0.3}, retry={"max_retries": 0}) as (url, _, _a):
        async with httpx.AsyncClient() as client:
            resp = await client.post(url + "/v1/chat/completions", json=CHAT)
            assert resp.status_code == 504
            assert resp.json()["error"]["code"] == "upstream_timeout"


async def test_a_hung_replica_is_retried_on_a_healthy_one() -> None:
    async with fleet(
        Behaviour(hang=True),
        Behaviour(),
        timeouts={"first_byte": 0.3},
        retry={"backoff_base": 0.001},
        routing_policy="round_robin",
    ) as (url, _, _a):
        async with httpx.AsyncClient() as client:
            for _ in range(4):
                resp = await client.post(url + "/v1/chat/completions", json={**CHAT, "stream": True})
                assert resp.status_code == 200
                assert resp.content.endswith(b"data: [DONE]\n\n")


async def test_a_dropped_connection_before_the_first_byte_is_retried() -> None:
    async with fleet(Behaviour(disconnect=True), Behaviour(), retry={"backoff_base": 0.001}) as (url, _, _a):
        async with httpx.AsyncClient() as client:
            for _ in range(4):
                resp = await client.post(url + "/v1/completions", json={"model": "fake-model", "prompt": "x"})
                assert resp.status_code == 200


@pytest.mark.parametrize("mode", ["close", "stall"])
async def test_a_stream_that_breaks_midway_ends_with_an_error_event_and_no_retry(mode: str) -> None:
    async with (
        fleet(Behaviour(output_tokens=8, fail_after_tokens=3, fail_mode=mode), timeouts={"idle": 0.3}) as (
            url,
            (engine,),
            _,
        ),
        httpx.AsyncClient() as client,
    ):
        resp = await client.post(url + "/v1/chat/completions", json={**CHAT, "stream": True})
        assert resp.status_code == 200
        events = sse_events(resp.content)
        assert events[-1] == b"data: [DONE]\n\n"
        error = orjson.loads(events[-2][6:])
        assert set(error["error"]) == {"message", "type", "param", "code"}
        assert error["error"]["code"] == ("upstream_timeout" if mode == "stall" else "bad_gateway")
        assert sum(text_count(e) for e in events) == 3
        # Nothing was retried after text reached the client.
        assert len(await recorded(client, engine)) == 1
        text = (await client.get(url.admin + "/metrics")).text
        kind = "timeout" if mode == "stall" else "protocol"
        assert metric(text, "inferstack_upstream_errors_total", kind=kind) == 1


async def test_models_are_aggregated_from_replicas() -> None:
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(running_engine(EngineConfig(models=("alpha",))))
        b = await stack.enter_async_context(running_engine(EngineConfig(models=("beta", "alpha"))))
        url, _ = await stack.enter_async_context(running_gateway([a, b]))
        async with httpx.AsyncClient() as client:
            async with asyncio.timeout(5):
                while len((await client.get(url + "/v1/models")).json()["data"]) < 2:
                    await asyncio.sleep(0.02)
            cards = (await client.get(url + "/v1/models")).json()["data"]
            assert [m["id"] for m in cards] == ["alpha", "beta"]
            # Each one the replica's own card (not the placeholder of a model scaled to zero).
            assert [(m["owned_by"], m["max_model_len"]) for m in cards] == [("vllm", 8192)] * 2
            resp = await client.post(url + "/v1/embeddings", json={"model": "beta", "input": ["one", "two"]})
            assert resp.status_code == 200
            assert len(resp.json()["data"]) == 2


async def test_held_requests_complete_when_a_replica_appears() -> None:
    from .gateway_harness import free_port

    port = free_port()
    async with (
        running_gateway([f"http://127.0.0.1:{port}"], wait_ready=False, models=["fake-model"], hold_timeout=20) as (
            url,
            _,
        ),
        httpx.AsyncClient(timeout=30) as client,
    ):
        requests = [asyncio.create_task(client.post(url + "/v1/chat/completions", json=CHAT)) for _ in range(3)]
        async with asyncio.timeout(5):
            while metric((await client.get(url.admin + "/metrics")).text, "inferstack_model_demand") != 3:
                await asyncio.sleep(0.02)
        assert metric((await client.get(url.admin + "/metrics")).text, "inferstack_held_requests") == 3
        async with running_engine(EngineConfig(), port=port):
            results = await asyncio.gather(*requests)
        assert [r.status_code for r in results] == [200, 200, 200]


async def test_a_full_fleet_queues_briefly_then_answers_429_with_retry_after() -> None:
    # One slot, a 2-second stream holding it: the next request waits queue_timeout, then 429.
    async with (
        fleet(Behaviour(output_tokens=40, itl=0.05), max_in_flight_per_replica=1, queue_timeout=0.3) as (
            url,
            _,
            _app,
        ),
        httpx.AsyncClient(timeout=30) as client,
    ):
        async with client.stream("POST", url + "/v1/chat/completions", json={**CHAT, "stream": True}) as first:
            lines = first.aiter_lines()  # held, not abandoned: a dropped iterator closes the stream
            while not text_count((await anext(lines)).encode() + b"\n\n"):
                pass
            second = await client.post(url + "/v1/chat/completions", json=CHAT)
            assert second.status_code == 429
            assert second.headers["retry-after"] == "1"
            assert second.json()["error"]["code"] == "rate_limit_exceeded"
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_held_requests") == 0
