"""The hold queue: FIFO per model, and a freed slot goes to the request that waited longest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from inferstack.config import Settings
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


async def held(metrics: GatewayMetrics, count: int) -> None:
    async with asyncio.timeout(5):
        while metrics.registry.get_sample_value("inferstack_held_requests", {"model": "m"}) != count:
            await asyncio.sleep(0)


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
    holds.occupy("m", (await holds.room("m"))[0])
    waiter = asyncio.create_task(holds.room("m"))
    await held(metrics, 1)
    holds.release("m", endpoint)  # wakes the waiter, which has not run yet
    assert await holds.room("m", wait=False) == []
    assert await waiter == [endpoint]
    # Nobody waiting: a retry takes a free slot at once.
    holds.occupy("m", endpoint)
    holds.release("m", endpoint)
    assert await holds.room("m", wait=False) == [endpoint]
