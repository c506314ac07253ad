"""A non-stream answer larger than ``responses.max_bytes``, through a real gateway to fake engines:
the client gets an OpenAI error (502), the attempt is counted, not retried and not held against the
replica, and the request's slot is given back once."""

from __future__ import annotations

import httpx

from inferstack_fake_engine import Behaviour

from ..test_relay_fake_engine import CHAT, configure, fleet, metric, recorded

LIMIT = 64 << 10
BIG = Behaviour(output_tokens=40_000)  # an answer of a few hundred kB, one Content-Length


async def test_an_answer_over_the_bound_is_a_502_not_retried_and_its_slot_released() -> None:
    async with (
        fleet(BIG, BIG, responses={"max_bytes": LIMIT}) as (url, engines, _),
        httpx.AsyncClient(timeout=30) as client,
    ):
        # More times than outlier detection's consecutive failures (3): the request's doing, not the replica's.
        for _ in range(4):
            resp = await client.post(url + "/v1/chat/completions", json=CHAT)
            assert resp.status_code == 502
            error = resp.json()["error"]
            assert error["code"] == "upstream_response_too_large"
            assert error["type"] == "upstream_error"
            assert f"({LIMIT} bytes)" in error["message"] and "stream it" in error["message"]
        counts = [len(await recorded(client, e)) for e in engines]
        assert sum(counts) == 4  # one attempt each: no retry
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_upstream_errors_total", kind="too_large") == 4
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
        assert metric(text, "inferstack_upstream_errors_total", kind="too_large") == 5
        assert metric(text, "inferstack_requests_in_flight") == 0
