"""What the gateway promises not to do, each checked where a deliberate bug would show (issue 13, section 4).

Each test here was written against a hand-made mutation of the gateway that the rest of the suite
let through; it fails with that mutation and passes without it (docs/mutation.md lists them).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
from aiohttp import web

from inferstack.relay.sse import text_count
from inferstack_fake_engine import Behaviour, EngineConfig, running_engine

from .gateway_harness import free_port, running_gateway
from .test_relay_fake_engine import (
    CHAT,
    configure,
    fixed_answer_engine,
    fleet,
    metric,
    recorded,
    scripted_engine,
    sse_events,
)
from .waiting import until


async def v1_requests(client: httpx.AsyncClient, engine: str) -> int:
    return len([r for r in await recorded(client, engine) if r["path"].startswith("/v1/")])


async def test_a_stream_that_breaks_after_text_is_not_retried_on_the_other_replica() -> None:
    # Two replicas, so a retry could happen: the broken stream must stay broken (an error event),
    # and the healthy replica must see only the request that was routed to it.
    async with (
        fleet(
            Behaviour(output_tokens=8, fail_after_tokens=3, fail_mode="close"),
            Behaviour(output_tokens=8),
            routing_policy="round_robin",
            retry={"backoff_base": 0.001},
        ) as (url, (broken, healthy), _),
        httpx.AsyncClient() as client,
    ):
        bodies = [
            (await client.post(url + "/v1/chat/completions", json={**CHAT, "stream": True})).content for _ in range(2)
        ]
        failed = [b for b in bodies if b'"error"' in b]
        assert len(failed) == 1
        events = sse_events(failed[0])
        assert sum(text_count(e) for e in events) == 3  # the text sent before the break, once
        assert orjson.loads(events[-2][6:])["error"]["code"] == "bad_gateway"
        assert (await v1_requests(client, broken), await v1_requests(client, healthy)) == (1, 1)
        assert metric((await client.get(url.admin + "/metrics")).text, "inferstack_upstream_retries_total") == 0


def body_of_size(size: int) -> bytes:
    """A valid chat request of exactly ``size`` bytes."""
    empty = orjson.dumps({**CHAT, "user": ""})
    return orjson.dumps({**CHAT, "user": "u" * (size - len(empty))})


async def test_a_body_of_exactly_the_limit_passes_and_one_byte_more_gets_413() -> None:
    limit = 2048

    async def chunked(data: bytes) -> AsyncIterator[bytes]:
        # No Content-Length: the limit is enforced while reading.
        for i in range(0, len(data), 500):
            yield data[i : i + 500]

    async with fleet(Behaviour(output_tokens=2), max_body_bytes=limit) as (url, _, _app), httpx.AsyncClient() as client:
        exact, over = body_of_size(limit), body_of_size(limit + 1)
        assert (len(exact), len(over)) == (limit, limit + 1)
        headers = {"content-type": "application/json"}
        path = url + "/v1/chat/completions"
        assert (await client.post(path, content=exact, headers=headers)).status_code == 200
        assert (await client.post(path, content=chunked(exact), headers=headers)).status_code == 200
        assert (await client.post(path, content=over, headers=headers)).status_code == 413
        assert (await client.post(path, content=chunked(over), headers=headers)).status_code == 413


async def test_a_cached_stream_carries_the_usage_chunk_only_when_asked() -> None:
    async with fleet(Behaviour(output_tokens=4)) as (url, (engine,), _), httpx.AsyncClient() as client:
        body = {**CHAT, "temperature": 0}
        miss = await client.post(url + "/v1/chat/completions", json=body)
        assert miss.headers["x-inferstack-cache"] == "miss"
        plain = await client.post(url + "/v1/chat/completions", json={**body, "stream": True})
        asked = await client.post(
            url + "/v1/chat/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}}
        )
        assert (plain.headers["x-inferstack-cache"], asked.headers["x-inferstack-cache"]) == ("hit", "hit")
        assert await v1_requests(client, engine) == 1
        assert [e for e in sse_events(plain.content) if b'"usage"' in e] == []
        usage_events = [e for e in sse_events(asked.content) if b'"usage":{' in e]
        assert len(usage_events) == 1
        assert orjson.loads(usage_events[0][6:])["usage"] == miss.json()["usage"]
        # A chat answer is replayed as chat chunks carrying the stored text (not as completion chunks).
        chunks = [orjson.loads(e[6:]) for e in sse_events(plain.content) if e != b"data: [DONE]\n\n"]
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert text == miss.json()["choices"][0]["message"]["content"]


async def test_session_routing_sticks_by_the_user_field() -> None:
    async with (
        fleet(Behaviour(), Behaviour(), Behaviour(), routing_policy="session") as (url, engines, _),
        httpx.AsyncClient() as client,
    ):
        # Twelve users: the replicas' order comes from their URLs, whose ports are random, and six put
        # every user on one replica for 1 port triple in 243 (3 x 3**-6), failing the spread below; twelve
        # do for 1 in 177,147.
        users = [f"user-{i}" for i in range(12)]
        homes: dict[str, set[int]] = {}
        for user in users:
            for _ in range(3):
                before = [await v1_requests(client, e) for e in engines]
                resp = await client.post(url + "/v1/chat/completions", json={**CHAT, "user": user})
                assert resp.status_code == 200
                after = [await v1_requests(client, e) for e in engines]
                homes.setdefault(user, set()).update(i for i in range(3) if after[i] > before[i])
        assert all(len(h) == 1 for h in homes.values()), homes
        assert len(Counter(next(iter(h)) for h in homes.values())) > 1  # users spread over replicas
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_routing_decisions_total", policy="session", reason="session") == 36


async def test_a_cache_hit_is_a_200_with_its_content_type_and_counts_as_one() -> None:
    async with fleet(Behaviour(output_tokens=4)) as (url, _, _app), httpx.AsyncClient() as client:
        body = {**CHAT, "temperature": 0}
        assert (await client.post(url + "/v1/chat/completions", json=body)).status_code == 200
        whole = await client.post(url + "/v1/chat/completions", json=body)
        declined = await client.post(
            url + "/v1/chat/completions", json={**body, "stream": True, "stream_options": {"include_usage": False}}
        )
        for hit, kind in ((whole, "application/json"), (declined, "text/event-stream; charset=utf-8")):
            assert (hit.status_code, hit.headers["x-inferstack-cache"]) == (200, "hit")
            assert hit.headers["content-type"] == kind
        assert [e for e in sse_events(declined.content) if b'"usage"' in e] == []
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_requests_total", status="200") == 3


async def test_an_ejected_replica_serves_held_requests_as_soon_as_its_ejection_ends() -> None:
    # Health checks every 30 s: only the end of the ejection itself can wake the held request.
    async with (
        fleet(
            Behaviour(error_status=500),
            health={"interval": 30, "timeout": 1},
            outlier={"consecutive_failures": 1, "base_ejection": 0.5},
            retry={"max_retries": 0},
            hold_timeout=10,
        ) as (url, (engine,), _),
        httpx.AsyncClient(timeout=20) as client,
    ):
        assert (await client.post(url + "/v1/chat/completions", json=CHAT)).status_code == 502
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_upstream_ejections_total", model="fake-model") == 1
        await configure(client, engine, error_status=0)
        started = asyncio.get_running_loop().time()
        resp = await client.post(url + "/v1/chat/completions", json=CHAT)
        assert resp.status_code == 200, resp.text
        assert asyncio.get_running_loop().time() - started < 5


async def test_a_streamed_miss_fills_the_cache_and_is_logged_as_a_200() -> None:
    async with fleet(Behaviour(output_tokens=4)) as (url, (engine,), _), httpx.AsyncClient() as client:
        body = {**CHAT, "temperature": 0}
        streamed = await client.post(url + "/v1/chat/completions", json={**body, "stream": True})
        assert streamed.headers["x-inferstack-cache"] == "miss"
        whole = await client.post(url + "/v1/chat/completions", json=body)
        assert whole.headers["x-inferstack-cache"] == "hit"
        assert await v1_requests(client, engine) == 1
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_requests_total", endpoint="chat", status="200") == 2
        assert metric(text, "inferstack_time_to_first_token_seconds_count", model="fake-model") == 1
        assert metric(text, "inferstack_inter_token_latency_seconds_count", model="fake-model") == 3
        # Durations, not clock readings: the fake engine answers at once.
        assert 0 < metric(text, "inferstack_time_to_first_token_seconds_sum", model="fake-model") < 2
        assert 0 <= metric(text, "inferstack_inter_token_latency_seconds_sum", model="fake-model") < 0.5


async def test_each_upstream_failure_has_its_own_kind_and_message() -> None:
    async with contextlib.AsyncExitStack() as stack:
        hung = await stack.enter_async_context(running_engine(EngineConfig(behaviour=Behaviour(hang=True))))
        dropping = await stack.enter_async_context(running_engine(EngineConfig(behaviour=Behaviour(disconnect=True))))
        async with running_engine(EngineConfig()) as gone:
            # Health checks every 30 s: the gateway still believes in `gone` after it stops.
            url, _ = await stack.enter_async_context(
                running_gateway(
                    [hung, dropping, gone],
                    health={"interval": 30, "timeout": 1},
                    timeouts={"first_byte": 0.3, "response": 0.3},
                    retry={"max_retries": 0},
                    routing_policy="round_robin",
                )
            )
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=url))
        seen = []
        for _ in range(3):
            error = (await client.post("/v1/chat/completions", json=CHAT)).json()["error"]
            seen.append((error["code"], error["message"]))
        assert sorted(seen) == [
            ("bad_gateway", "The upstream replica broke the connection."),
            ("bad_gateway", "The upstream replica is unreachable."),
            ("upstream_timeout", "The upstream replica did not answer in time."),
        ]
        text = (await client.get(url.admin + "/metrics")).text
        for kind in ("timeout", "protocol", "connect"):
            assert metric(text, "inferstack_upstream_errors_total", kind=kind, model="fake-model") == 1, kind


async def test_the_hold_queue_is_bounded_and_counts_demand_per_model() -> None:
    async with (
        running_gateway(
            [f"http://127.0.0.1:{free_port()}"],
            wait_ready=False,
            models=["fake-model"],
            max_held_requests=2,
            hold_timeout=5,
        ) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        held = [asyncio.create_task(client.post("/v1/chat/completions", json=CHAT)) for _ in range(2)]
        async with asyncio.timeout(5):
            while (
                metric((await client.get(url.admin + "/metrics")).text, "inferstack_model_demand", model="fake-model")
                != 2
            ):
                await asyncio.sleep(0.02)
        third = await client.post("/v1/chat/completions", json=CHAT)
        assert third.status_code == 429
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)


async def test_a_stream_outlasts_the_idle_timeout_while_tokens_flow_and_total_cuts_it() -> None:
    flowing = Behaviour(output_tokens=12, itl=0.1)  # 1.2 s of tokens, never 0.4 s of silence
    async with fleet(flowing, timeouts={"idle": 0.4}) as (url, _, _app), httpx.AsyncClient(timeout=30) as client:
        resp = await client.post(url + "/v1/chat/completions", json={**CHAT, "stream": True})
        events = sse_events(resp.content)
        assert sum(text_count(e) for e in events) == 12 and b'"error"' not in resp.content
        text = (await client.get(url.admin + "/metrics")).text
        # One first token, then 11 gaps of about 0.1 s each (one chunk per token).
        assert metric(text, "inferstack_time_to_first_token_seconds_count", model="fake-model") == 1
        assert metric(text, "inferstack_inter_token_latency_seconds_count", model="fake-model") == 11
        assert 0.5 < metric(text, "inferstack_inter_token_latency_seconds_sum", model="fake-model") < 5
    endless = Behaviour(output_tokens=400, itl=0.02)  # 8 s of tokens
    timeouts = {"idle": 5, "total": 1, "first_byte": 1, "response": 1, "connect": 1}
    async with fleet(endless, timeouts=timeouts) as (url, _, _app), httpx.AsyncClient(timeout=30) as client:
        started = asyncio.get_running_loop().time()
        resp = await client.post(url + "/v1/chat/completions", json={**CHAT, "stream": True})
        assert asyncio.get_running_loop().time() - started < 4
        events = sse_events(resp.content)
        assert orjson.loads(events[-2][6:])["error"]["code"] == "upstream_timeout"
        assert 0 < sum(text_count(e) for e in events) < 400


async def test_a_non_stream_answer_is_counted_from_its_usage() -> None:
    async with fleet(Behaviour(output_tokens=5)) as (url, _, _app), httpx.AsyncClient() as client:
        resp = await client.post(url + "/v1/completions", json={"model": "fake-model", "prompt": "hi"})
        usage = resp.json()["usage"]
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_completion_tokens_total", model="fake-model") == usage["completion_tokens"] == 5
        assert metric(text, "inferstack_prompt_tokens_total", model="fake-model") == usage["prompt_tokens"] > 0


async def test_a_fleet_wide_failure_ejects_no_more_than_the_share_of_the_models_replicas() -> None:
    # Every replica answers 500: ejecting them all would leave nothing to route to. 50 % of 3: one.
    async with (
        fleet(
            *[Behaviour(error_status=500)] * 3,
            outlier={"consecutive_failures": 1, "base_ejection": 30, "max_ejected_percent": 50},
            health={"interval": 30, "timeout": 1},
            retry={"max_retries": 0},
            routing_policy="round_robin",
            hold_timeout=1,
        ) as (url, _, _app),
        httpx.AsyncClient() as client,
    ):
        statuses = [(await client.post(url + "/v1/chat/completions", json=CHAT)).status_code for _ in range(6)]
        assert statuses == [502] * 6  # each reached a replica: none was held for want of one
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_upstream_ejections_total", model="fake-model") == 1


@contextlib.contextmanager
def unanswered(port: int) -> Iterator[None]:
    """``port`` listens but never completes a connection: its accept queue is full, so SYNs are dropped."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(0)
    fillers = [socket.create_connection(("127.0.0.1", port), timeout=1)]  # a backlog of 0 queues one
    try:
        with socket.socket() as probe:  # the premise: a further connection does not complete
            probe.settimeout(0.2)
            assert probe.connect_ex(("127.0.0.1", port)) != 0
        yield
    finally:
        for s in fillers:
            s.close()
        listener.close()


async def test_a_replica_that_does_not_accept_connections_is_unreachable_not_a_timeout() -> None:
    # A connect timeout sends nothing: it is "unreachable" (502, kind connect), never "did not answer
    # in time" (504, kind timeout, which a non-stream request may not retry).
    async with contextlib.AsyncExitStack() as stack:
        async with running_engine(EngineConfig()) as gone:
            # Health checks every 30 s: the gateway still believes in the replica after it stops.
            url, _ = await stack.enter_async_context(
                running_gateway(
                    [gone], health={"interval": 30, "timeout": 1}, timeouts={"connect": 0.3}, retry={"max_retries": 0}
                )
            )
        stack.enter_context(unanswered(int(gone.rsplit(":", 1)[1])))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=url))
        resp = await client.post("/v1/chat/completions", json=CHAT)
        assert resp.status_code == 502
        error = resp.json()["error"]
        assert (error["code"], error["message"]) == ("bad_gateway", "The upstream replica is unreachable.")
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_upstream_errors_total", kind="connect", model="fake-model") == 1
        assert metric(text, "inferstack_upstream_errors_total", kind="timeout") == 0


async def test_a_success_between_failures_keeps_a_replica_in() -> None:
    # Two failures in a row eject; failure, success, failure is not two in a row.
    async with (
        fleet(
            Behaviour(),
            outlier={"consecutive_failures": 2},
            retry={"max_retries": 0},
            health={"interval": 30, "timeout": 1},
        ) as (url, (engine,), _app),
        httpx.AsyncClient() as client,
    ):
        for status in (500, 0, 500, 0):
            await configure(client, engine, error_status=status)
            resp = await client.post(url + "/v1/chat/completions", json=CHAT)
            assert resp.status_code == (502 if status else 200), resp.text
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_upstream_ejections_total", model="fake-model") == 0


async def test_a_passing_health_check_does_not_forgive_failed_requests() -> None:
    # An engine that answers /health but fails every other request must still be ejected: as in Envoy,
    # only a request's success resets the consecutive-failure count, not the active health check.
    async with (
        fleet(
            Behaviour(),
            outlier={"consecutive_failures": 2},
            retry={"max_retries": 0},
            health={"interval": 0.05, "timeout": 1},
        ) as (url, (engine,), _app),
        httpx.AsyncClient() as client,
    ):
        await configure(client, engine, error_status=500)
        resp = await client.post(url + "/v1/chat/completions", json=CHAT)
        assert resp.status_code == 502, resp.text
        # Wait (bounded) until the gateway has run at least one whole active check since the failure.

        async def health_checks() -> int:
            return int((await client.get(engine + "/_fake/health_checks")).json()["health_checks"])

        seen = await health_checks()

        async def a_whole_check_ran() -> bool:
            return await health_checks() >= seen + 2

        await until(a_whole_check_ran, "a whole active health check", within=10)
        resp = await client.post(url + "/v1/chat/completions", json=CHAT)
        assert resp.status_code == 502, resp.text
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_upstream_ejections_total", model="fake-model") == 1


async def test_prompt_and_prefix_cache_tokens_are_counted_per_routing_policy() -> None:
    # What tells a policy's prefix-cache hit rate: the engine's usage.prompt_tokens_details.
    answer = orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": 40,
                "completion_tokens": 1,
                "total_tokens": 41,
                "prompt_tokens_details": {"cached_tokens": 32},
            },
        }
    )
    async with (
        fixed_answer_engine(answer) as engine,
        running_gateway([engine], routing_policy="least_load") as (url, _),
        httpx.AsyncClient() as client,
    ):
        assert (await client.post(url + "/v1/chat/completions", json=CHAT)).status_code == 200
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_routed_prompt_tokens_total", policy="least_load") == 40
        assert metric(text, "inferstack_routed_cached_prompt_tokens_total", policy="least_load") == 32


@contextlib.asynccontextmanager
async def empty_stream_engine() -> AsyncIterator[str]:
    """An upstream that answers every request with a 200 event stream that ends before its first byte."""

    async def empty(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write_eof()
        return resp

    async with scripted_engine(empty) as url:
        yield url


async def test_an_empty_stream_is_a_broken_replica_not_an_empty_answer() -> None:
    async with (
        empty_stream_engine() as engine,
        running_gateway([engine], retry={"max_retries": 0}) as (url, _),
        httpx.AsyncClient() as client,
    ):
        resp = await client.post(url + "/v1/chat/completions", json={**CHAT, "stream": True})
        assert resp.status_code == 502
        error = resp.json()["error"]
        assert (error["code"], error["message"]) == ("bad_gateway", "The upstream replica sent an empty stream.")
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_upstream_errors_total", kind="protocol", model="fake-model") == 1


async def test_a_client_that_leaves_before_the_first_token_cancels_the_upstream_request() -> None:
    # The engine has sent its headers and thinks for 30 s: the gateway must not keep it busy for a
    # client that left (first_byte 60 s: only the client's leaving can end it).
    async with (
        fleet(Behaviour(ttft=30), timeouts={"first_byte": 60}) as (url, (engine,), _),
        httpx.AsyncClient() as client,
    ):
        leaving = asyncio.create_task(client.post(url + "/v1/chat/completions", json={**CHAT, "stream": True}))
        async with asyncio.timeout(5):
            while metric((await client.get(engine + "/metrics")).text, "vllm:num_requests_running") != 1:
                await asyncio.sleep(0.02)
        leaving.cancel()
        await asyncio.gather(leaving, return_exceptions=True)
        async with asyncio.timeout(5):
            while metric((await client.get(engine + "/metrics")).text, "vllm:num_requests_running") != 0:
                await asyncio.sleep(0.02)


async def test_the_total_timeout_cuts_a_retry_that_would_outlast_it() -> None:
    # first_byte 2 s, total 2.5 s: the retry on the second hung replica gets the 0.5 s that remain,
    # not another 2 s (the bound leaves room for this shared machine).
    async with (
        fleet(
            Behaviour(hang=True),
            Behaviour(hang=True),
            timeouts={"connect": 1, "first_byte": 2, "response": 2, "total": 2.5},
            retry={"backoff_base": 0.001},
            routing_policy="round_robin",
        ) as (url, _, _app),
        httpx.AsyncClient(timeout=10) as client,
    ):
        started = asyncio.get_running_loop().time()
        resp = await client.post(url + "/v1/chat/completions", json={**CHAT, "stream": True})
        assert resp.status_code == 504
        assert asyncio.get_running_loop().time() - started < 3.5
        assert metric((await client.get(url.admin + "/metrics")).text, "inferstack_upstream_retries_total") == 1


async def test_a_replica_takes_at_most_its_cap_and_a_freed_slot_goes_to_a_held_request() -> None:
    # Cap 2, four 0.5 s requests: two waves (so at least ~1 s), and the second wave starts as slots
    # free, not at the 5 s queue timeout or the next health check (every 30 s).
    async with (
        fleet(
            Behaviour(ttft=0.5, output_tokens=1),
            max_in_flight_per_replica=2,
            queue_timeout=5,
            health={"interval": 30, "timeout": 1},
        ) as (url, _, _app),
        httpx.AsyncClient(timeout=20) as client,
    ):
        started = asyncio.get_running_loop().time()
        answers = await asyncio.gather(*(client.post(url + "/v1/chat/completions", json=CHAT) for _ in range(4)))
        elapsed = asyncio.get_running_loop().time() - started
        assert [a.status_code for a in answers] == [200] * 4
        assert 0.95 <= elapsed < 4, elapsed
