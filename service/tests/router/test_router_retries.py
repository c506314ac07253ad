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
