"""The router's retry budget over a gateway's life: each request counts itself active while it is
routed, and its retry while it retries, and gives both back when it ends, so that the budget a later
request meets is what is in flight then. Against fake engines, one refusing every request."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest

from inferstack_fake_engine import Behaviour

from ..gateway_harness import GatewayURL
from ..test_relay_fake_engine import CHAT, configure, fleet, metric, recorded
from ..waiting import until


def two_replicas(**gateway: Any) -> AbstractAsyncContextManager[tuple[GatewayURL, list[str], Any]]:
    """Two fake engines answering two tokens each (changed by the test), behind a gateway with ``gateway``."""
    return fleet(Behaviour(output_tokens=2), Behaviour(output_tokens=2), **gateway)


async def answers(retry: dict[str, Any], requests: int = 4) -> tuple[list[int], float, int]:
    """Statuses of ``requests`` sequential requests through a refusing replica and a healthy one (round
    robin: every other request meets the refusing one first), the retries counted, and the requests the
    refusing replica saw."""
    async with (
        fleet(Behaviour(error_status=503), Behaviour(output_tokens=2), routing_policy="round_robin", retry=retry) as (
            url,
            (refusing, _),
            _app,
        ),
        httpx.AsyncClient(timeout=30) as client,
    ):
        statuses = [(await client.post(url + "/v1/chat/completions", json=CHAT)).status_code for _ in range(requests)]
        text = (await client.get(url.admin + "/metrics")).text
        return (
            statuses,
            metric(text, "inferstack_upstream_retries_total", model="fake-model"),
            len(await recorded(client, refusing)),
        )


async def test_a_retry_gives_its_place_in_the_budget_back_when_its_request_ends() -> None:
    # One retry at a time at most (the floor; no share): sequential requests each find it free again.
    statuses, retries, refused = await answers({"budget_percent": 0, "min_retry_concurrency": 1, "backoff_base": 0.001})
    assert refused == 2 and retries == 2
    assert statuses == [200] * 4


async def test_a_request_is_active_while_it_is_routed_and_no_longer_after() -> None:
    # No floor, a share of 100%: a request may retry while retries in flight < active requests, so one
    # request alone may (1 active, 0 retrying), and each later one alone may too.
    statuses, retries, refused = await answers(
        {"budget_percent": 100, "min_retry_concurrency": 0, "backoff_base": 0.001}
    )
    assert refused == 2 and retries == 2
    assert statuses == [200] * 4


@pytest.mark.parametrize(("percent", "exhausted"), [(50, 1), (100, 0)])
async def test_a_retry_meets_the_budget_of_the_requests_in_flight_then(percent: float, exhausted: int) -> None:
    # Two replicas, one request each at most. First, two requests that end (one retried); then A
    # retries onto the second replica, which holds it; B, alone on the first, fails there and asks the
    # budget while A is in flight: 2 active, 1 retrying. At 50% (no floor) that is the limit, at 100%
    # not. (B gets 502 either way: the other replica is full and a retry does not wait.)
    retry = {"budget_percent": percent, "min_retry_concurrency": 0, "backoff_base": 0.001}
    async with (
        two_replicas(routing_policy="round_robin", retry=retry, max_in_flight_per_replica=1) as (url, engines, _app),
        httpx.AsyncClient(timeout=30) as client,
    ):
        refusing, holding = sorted(engines)  # round robin goes by URL: the first request meets `refusing`
        await configure(client, refusing, error_status=503)
        for _ in range(2):  # the first retried onto `holding`, the second sent there
            assert (await client.post(url + "/v1/chat/completions", json=CHAT)).status_code == 200
        await configure(client, holding, hang=True)
        held = asyncio.create_task(client.post(url + "/v1/chat/completions", json=CHAT))

        async def a_is_held() -> bool:
            return len(await recorded(client, holding)) == 3

        await until(a_is_held, "A's retry to reach the holding replica")
        assert (await client.post(url + "/v1/chat/completions", json=CHAT)).status_code == 502
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_retry_budget_exhausted_total", model="fake-model") == exhausted
        held.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await held


async def test_two_retries_in_flight_count_as_two() -> None:
    # The floor lets two requests retry at once. Session routing sends every request of one user to
    # its home replica first; the home refuses, so each retries onto the other, which holds it. A third
    # request, while both are held mid-retry, finds the budget spent (2 retrying, not 1): its 502 comes
    # at once, without a third retry onto the holding replica (where it would hang).
    retry = {"budget_percent": 0, "min_retry_concurrency": 2, "backoff_base": 0.001}
    async with (
        # consecutive_failures: the refusing home stays a candidate
        two_replicas(routing_policy="session", retry=retry, outlier={"consecutive_failures": 100}) as (url, engines, _),
        httpx.AsyncClient(timeout=30) as client,
    ):
        body = {**CHAT, "user": "one user"}
        assert (await client.post(url + "/v1/chat/completions", json=body)).status_code == 200
        home, other = engines if await recorded(client, engines[0]) else engines[::-1]
        await configure(client, home, error_status=503)
        await configure(client, other, hang=True)
        held = [asyncio.create_task(client.post(url + "/v1/chat/completions", json=body)) for _ in range(2)]

        async def both_held() -> bool:
            return len(await recorded(client, other)) == 2

        await until(both_held, "both retries to reach the holding replica")
        async with asyncio.timeout(5):
            assert (await client.post(url + "/v1/chat/completions", json=body)).status_code == 502
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_retry_budget_exhausted_total", model="fake-model") == 1
        assert len(await recorded(client, other)) == 2
        for task in held:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
