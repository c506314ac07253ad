"""The hold queue: FIFO per model, a freed slot goes to the request that waited longest (of the model that
freed it first, else of another model the replica serves), and demand counts held and in-flight requests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from inferstack.config import Settings
from inferstack.errors import RateLimitError
from inferstack.metrics.gateway import GatewayMetrics
from inferstack.upstream.cluster import Cluster
from inferstack.upstream.endpoint import Endpoint
from inferstack.upstream.hold import HoldQueue


@pytest.fixture
async def one_slot() -> AsyncIterator[tuple[HoldQueue, Endpoint, GatewayMetrics]]:
    """A cluster of one healthy replica of model "m" that takes one request at a time."""
    settings = Settings(upstreams=[], max_in_flight_per_replica=1, queue_timeout=10)
    metrics = GatewayMetrics()
    async with aiohttp.ClientSession() as session:
        cluster = Cluster(settings, session, metrics)
        endpoint = cluster.endpoints["http://r0"] = Endpoint("http://r0", frozenset({"m"}), healthy=True)
        yield HoldQueue(settings, cluster, metrics), endpoint, metrics
        await cluster.close()


@pytest.fixture
async def base_and_adapter() -> AsyncIterator[tuple[HoldQueue, Endpoint, GatewayMetrics]]:
    """One healthy replica of base model "m" taking two requests at a time; it also serves the adapter
    "lora" (loaded on demand), so a slot one model frees can go to the other."""
    settings = Settings(upstreams=[], max_in_flight_per_replica=2, queue_timeout=60)
    metrics = GatewayMetrics()
    async with aiohttp.ClientSession() as session:
        cluster = Cluster(settings, session, metrics)
        cluster.adapter_bases["lora"] = "m"
        endpoint = cluster.endpoints["http://r0"] = Endpoint("http://r0", frozenset({"m"}), healthy=True)
        yield HoldQueue(settings, cluster, metrics), endpoint, metrics
        await cluster.close()


@contextlib.asynccontextmanager
async def one_replica(**settings: Any) -> AsyncIterator[tuple[HoldQueue, Cluster, Endpoint, GatewayMetrics]]:
    """A cluster of one healthy replica "http://r0" of model "m" taking one request at a time."""
    s = Settings(upstreams=[], max_in_flight_per_replica=1, **settings)
    metrics = GatewayMetrics()
    async with aiohttp.ClientSession() as session:
        cluster = Cluster(s, session, metrics)
        r0 = cluster.endpoints["http://r0"] = Endpoint("http://r0", frozenset({"m"}), healthy=True)
        yield HoldQueue(s, cluster, metrics), cluster, r0, metrics
        await cluster.close()


async def held(metrics: GatewayMetrics, count: int, model: str = "m") -> None:
    async with asyncio.timeout(5):
        while metrics.registry.get_sample_value("inferstack_held_requests", {"model": model}) != count:
            await asyncio.sleep(0)


async def fill_and_hold(holds: HoldQueue, metrics: GatewayMetrics, waiting: int) -> list[asyncio.Task[list[Endpoint]]]:
    """Take the one slot of model "m", then hold ``waiting`` requests for it, in order."""
    holds.occupy("m", (await holds.room("m"))[0])
    tasks = []
    for i in range(waiting):
        tasks.append(asyncio.create_task(holds.room("m")))
        await held(metrics, i + 1)
    return tasks


def demand(metrics: GatewayMetrics, model: str) -> float | None:
    return metrics.registry.get_sample_value("inferstack_model_demand", {"model": model})


def in_flight(metrics: GatewayMetrics, model: str) -> float | None:
    return metrics.registry.get_sample_value("inferstack_requests_in_flight", {"model": model})


async def test_freed_slots_go_to_waiters_in_arrival_order_and_newcomers_queue_behind(
    one_slot: tuple[HoldQueue, Endpoint, GatewayMetrics],
) -> None:
    holds, endpoint, metrics = one_slot
    holds.occupy("m", (await holds.room("m"))[0])
    served: list[str] = []

    async def request(name: str) -> None:
        chosen = (await holds.room("m"))[0]
        holds.occupy("m", chosen)
        served.append(name)

    waiters = []
    for i, name in enumerate(("first", "second", "third")):
        waiters.append(asyncio.create_task(request(name)))
        await held(metrics, i + 1)
    holds.release("m", endpoint)
    # The woken head takes the slot; its departure would leave a free slot to nobody else.
    async with asyncio.timeout(5):
        while served != ["first"]:
            await asyncio.sleep(0)
    newcomer = asyncio.create_task(request("newcomer"))
    await held(metrics, 3)
    for expected in (["first", "second"], ["first", "second", "third"], ["first", "second", "third", "newcomer"]):
        holds.release("m", endpoint)
        async with asyncio.timeout(5):
            while served != expected:
                await asyncio.sleep(0)
    await asyncio.gather(*waiters, newcomer)
    assert holds.demand("m") == 1


async def test_a_slot_freed_while_others_wait_is_not_taken_by_a_retry(
    one_slot: tuple[HoldQueue, Endpoint, GatewayMetrics],
) -> None:
    holds, endpoint, metrics = one_slot
    (waiter,) = await fill_and_hold(holds, metrics, 1)
    holds.release("m", endpoint)  # wakes the waiter, which has not run yet
    assert await holds.room("m", wait=False) == []
    assert await waiter == [endpoint]
    # Nobody waiting: a retry takes a free slot at once.
    holds.occupy("m", endpoint)
    holds.release("m", endpoint)
    assert await holds.room("m", wait=False) == [endpoint]


async def test_a_slot_freed_by_one_model_wakes_a_request_held_for_another_the_replica_serves(
    base_and_adapter: tuple[HoldQueue, Endpoint, GatewayMetrics],
) -> None:
    holds, endpoint, metrics = base_and_adapter
    for _ in range(2):
        holds.occupy("m", (await holds.room("m"))[0])
    waiter = asyncio.create_task(holds.room("lora"))
    await held(metrics, 1, "lora")
    holds.release("m", endpoint)
    # Served now, not when the queue timeout (60 s) or a cluster change would wake it.
    async with asyncio.timeout(5):
        assert await waiter == [endpoint]


async def test_a_freed_slot_goes_to_a_waiter_of_the_model_that_freed_it_first(
    base_and_adapter: tuple[HoldQueue, Endpoint, GatewayMetrics],
) -> None:
    holds, endpoint, metrics = base_and_adapter
    for _ in range(2):
        holds.occupy("lora", (await holds.room("lora"))[0])
    served: list[str] = []

    async def request(name: str, model: str) -> None:
        holds.occupy(model, (await holds.room(model))[0])
        served.append(name)

    base = asyncio.create_task(request("base", "m"))  # waits longest, but for the other model
    await held(metrics, 1, "m")
    adapters = [asyncio.create_task(request(f"lora-{i}", "lora")) for i in (1, 2)]
    await held(metrics, 2, "lora")
    holds.release("lora", endpoint)
    holds.release("lora", endpoint)
    async with asyncio.timeout(5):
        await asyncio.gather(*adapters)
    assert served == ["lora-1", "lora-2"]
    assert not base.done()
    holds.release("lora", endpoint)  # now nobody of "lora" waits: the base model's request goes
    async with asyncio.timeout(5):
        await base
    assert served[-1] == "base"


async def test_demand_counts_every_request_in_flight_and_every_held_one(
    base_and_adapter: tuple[HoldQueue, Endpoint, GatewayMetrics],
) -> None:
    holds, endpoint, metrics = base_and_adapter
    assert demand(metrics, "m") is None  # not declared in settings: no series before its first request
    for expected in (1, 2):
        holds.occupy("m", (await holds.room("m"))[0])
        assert (holds.demand("m"), demand(metrics, "m"), in_flight(metrics, "m")) == (expected, expected, expected)
    waiter = asyncio.create_task(holds.room("m"))
    await held(metrics, 1)
    assert (holds.demand("m"), demand(metrics, "m"), in_flight(metrics, "m")) == (3, 3, 2)
    holds.release("m", endpoint)
    holds.occupy("m", (await waiter)[0])  # the held request takes the freed slot: still two in flight
    assert (holds.demand("m"), demand(metrics, "m"), in_flight(metrics, "m")) == (2, 2, 2)
    for expected in (1, 0):
        holds.release("m", endpoint)
        assert (holds.demand("m"), demand(metrics, "m"), in_flight(metrics, "m")) == (expected, expected, expected)


async def test_a_full_wait_queue_refuses_at_once_and_counts_it() -> None:
    async with one_replica(max_held_requests=1, queue_timeout=60) as (holds, _, _, metrics):
        holds.occupy("m", (await holds.room("m"))[0])
        waiter = asyncio.create_task(holds.room("m"))
        await held(metrics, 1)
        with pytest.raises(RateLimitError) as refused:
            await holds.room("m")
        # What the client reads in the 429 (and when to retry).
        assert (refused.value.message, refused.value.retry_after) == (
            "The gateway's wait queue is full; retry later.",
            1,
        )
        assert (
            metrics.registry.get_sample_value("inferstack_rate_limited_total", {"tenant": "all", "limit": "queue"}) == 1
        )
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)


async def test_a_freed_slot_skips_a_waiter_for_an_adapter_of_a_base_the_replica_does_not_serve() -> None:
    # Two replicas of two bases, each with an adapter loaded on demand; both full, each adapter's
    # request held. A slot on the replica of "m" must go to the request for "m"'s adapter, not be
    # spent waking the one for "b"'s adapter, which that replica cannot serve.
    settings = Settings(upstreams=[], max_in_flight_per_replica=1, queue_timeout=60)
    metrics = GatewayMetrics()
    async with aiohttp.ClientSession() as session:
        cluster = Cluster(settings, session, metrics)
        cluster.adapter_bases.update({"lora-b": "b", "lora-m": "m"})  # the other base's adapter first
        r_m = cluster.endpoints["http://rm"] = Endpoint("http://rm", frozenset({"m"}), healthy=True)
        r_b = cluster.endpoints["http://rb"] = Endpoint("http://rb", frozenset({"b"}), healthy=True)
        holds = HoldQueue(settings, cluster, metrics)
        holds.occupy("m", (await holds.room("m"))[0])
        holds.occupy("b", (await holds.room("b"))[0])
        for_b = asyncio.create_task(holds.room("lora-b"))
        for_m = asyncio.create_task(holds.room("lora-m"))
        await held(metrics, 1, "lora-b")
        await held(metrics, 1, "lora-m")
        assert cluster.served(r_m) == ["m", "lora-m"]
        holds.release("m", r_m)
        # Served now, not when the queue timeout (60 s) or a cluster change would wake it.
        async with asyncio.timeout(5):
            assert await for_m == [r_m]
        assert not for_b.done()
        holds.release("b", r_b)
        async with asyncio.timeout(5):
            assert await for_b == [r_b]
        await cluster.close()


async def test_a_held_request_woken_without_a_slot_waits_out_its_whole_queue_timeout() -> None:
    # A cluster change wakes every held request; one that finds no slot waits again for what is left
    # of queue_timeout, and is refused only once all of it has passed. The time passing is the subject
    # here: the wake comes after 0.6 s of the 1.5 s, so less than a second is left when it comes.
    async with one_replica(queue_timeout=1.5) as (holds, cluster, _, metrics):
        holds.occupy("m", (await holds.room("m"))[0])
        started = time.monotonic()
        waiter = asyncio.create_task(holds.room("m"))
        await held(metrics, 1)
        await asyncio.sleep(0.6)
        cluster.set_urls(cluster.endpoints)  # nothing changes, but the waiters are woken to look again
        with pytest.raises(RateLimitError) as refused:
            await waiter
        assert time.monotonic() - started >= 1.5
        # What the client reads in the 429: the replicas are there but full; retry after the queue timeout.
        assert (refused.value.message, refused.value.retry_after) == (
            "Every replica serving 'm' is at capacity; retry later.",
            1.5,
        )


async def test_a_newcomer_that_finds_a_slot_free_wakes_the_head_of_the_queue() -> None:
    # A slot can come free with no wake-up of the queue: here an ejection ends in a cluster that runs
    # no health checker (the gateway's checker would also wake the queue then). The next request to
    # arrive sees the free slot and wakes the head, which takes it; the newcomer stays behind.
    async with one_replica(queue_timeout=60, hold_timeout=60) as (holds, _, r0, metrics):
        r0.ejected_until = time.monotonic() + 0.3
        head = asyncio.create_task(holds.room("m"))
        await held(metrics, 1)
        await asyncio.sleep(0.3)  # the time the ejection lasts: it passes, and nothing is told
        newcomer = asyncio.create_task(holds.room("m"))
        async with asyncio.timeout(5):
            assert await head == [r0]
        holds.occupy("m", r0)
        assert not newcomer.done()
        holds.release("m", r0)
        async with asyncio.timeout(5):
            assert await newcomer == [r0]


async def test_the_wait_queue_bound_counts_only_the_requests_held_now() -> None:
    # max_held_requests bounds the requests waiting at once, not those ever held: one held and served
    # leaves room for the next; one held now leaves none.
    async with one_replica(max_held_requests=1, queue_timeout=60) as (holds, _, r0, metrics):
        holds.occupy("m", (await holds.room("m"))[0])
        for _ in range(2):
            waiter = asyncio.create_task(holds.room("m"))
            await held(metrics, 1)
            holds.release("m", r0)
            async with asyncio.timeout(5):
                holds.occupy("m", (await waiter)[0])
        waiter = asyncio.create_task(holds.room("m"))
        await held(metrics, 1)
        with pytest.raises(RateLimitError, match="wait queue is full"):
            async with asyncio.timeout(5):  # at once, not after the queue timeout
                await holds.room("m")
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        # The queue's gauges have series for the model it served, and for nothing else.
        models = {
            s.labels["model"]
            for m in metrics.registry.collect()
            if m.name == "inferstack_held_requests"
            for s in m.samples
        }
        assert models == {"m"}


async def test_a_woken_head_that_leaves_before_taking_the_slot_passes_it_to_the_next(
    one_slot: tuple[HoldQueue, Endpoint, GatewayMetrics],
) -> None:
    holds, endpoint, metrics = one_slot
    first, second = await fill_and_hold(holds, metrics, 2)
    holds.release("m", endpoint)  # wakes the head...
    first.cancel()  # ...whose client leaves before it runs: the slot is the next request's
    async with asyncio.timeout(5):  # now, not after the queue timeout (10 s)
        assert await second == [endpoint]
    assert first.cancelled()


async def test_a_declared_model_has_its_gauges_at_zero_before_its_first_request() -> None:
    # The autoscaler reads these series from the start: a model with no request yet has none in flight.
    settings = Settings(upstreams=[], models=["declared"])
    metrics = GatewayMetrics()
    async with aiohttp.ClientSession() as session:
        cluster = Cluster(settings, session, metrics)
        HoldQueue(settings, cluster, metrics)
        assert (in_flight(metrics, "declared"), demand(metrics, "declared")) == (0, 0)
        assert metrics.registry.get_sample_value("inferstack_held_requests", {"model": "declared"}) == 0
        await cluster.close()
