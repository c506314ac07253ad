"""How many times the router tries: the first attempt and at most ``max_retries`` more, each on a
replica not tried yet. Three fake engines, two refusing; round robin by URL makes the order known."""

from __future__ import annotations

import httpx
import pytest

from inferstack_fake_engine import Behaviour

from ..test_relay_fake_engine import CHAT, configure, fleet, metric, recorded


@pytest.mark.parametrize(("max_retries", "status", "attempts"), [(1, 502, 2), (2, 200, 3)])
async def test_a_request_is_tried_once_and_then_at_most_max_retries_times_more(
    max_retries: int, status: int, attempts: int
) -> None:
    retry = {"max_retries": max_retries, "budget_percent": 100, "min_retry_concurrency": 3, "backoff_base": 0.001}
    engines_ = [Behaviour(output_tokens=2) for _ in range(3)]
    async with (
        fleet(*engines_, routing_policy="round_robin", retry=retry) as (url, engines, _app),
        httpx.AsyncClient(timeout=30) as client,
    ):
        first, healthy, second = sorted(engines)  # round robin by URL: first, then second, then healthy
        for refusing in (first, second):
            await configure(client, refusing, error_status=503)
        assert (await client.post(url + "/v1/chat/completions", json=CHAT)).status_code == status
        tried = [len(await recorded(client, e)) for e in (first, second, healthy)]
        assert tried == [1, 1, 1][:attempts] + [0] * (3 - attempts)
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_upstream_retries_total", model="fake-model") == attempts - 1


async def test_no_retry_whose_back_off_would_outlast_the_total_deadline() -> None:
    # A back-off drawn below 10**5 s (full jitter) with 1 s left: it would end past the deadline (but
    # for a chance of 1 in 10**5), so the first failure is the answer, at once, and nothing waits.
    retry = {"backoff_base": 1e5, "backoff_max": 1e5, "budget_percent": 100}
    async with (
        fleet(
            Behaviour(output_tokens=2),
            Behaviour(output_tokens=2),
            routing_policy="round_robin",
            retry=retry,
            timeouts={"total": 1.0, "connect": 1.0, "first_byte": 1.0, "response": 1.0},
        ) as (url, engines, _app),
        httpx.AsyncClient(timeout=10) as client,
    ):
        refusing, healthy = sorted(engines)
        await configure(client, refusing, error_status=503)
        assert (await client.post(url + "/v1/chat/completions", json=CHAT)).status_code == 502
        assert [len(await recorded(client, e)) for e in (refusing, healthy)] == [1, 0]
