"""Subscribers against a real ZMQ publisher (loopback ipc): join subscribes, leave forgets, bad messages skip."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
from prometheus_client import CollectorRegistry

from inferstack.kvcache.index import KVIndex
from inferstack.kvcache.metrics import IndexCollector, KVMetrics
from inferstack.kvcache.subscriber import HASHES_PER_STEP, KVEventHub, event_endpoint

from ..waiting import until
from .events import frames, stored

URL = "http://127.0.0.1:8000"


def test_endpoint_is_the_configured_one_or_the_replica_host_on_the_port() -> None:
    assert event_endpoint("http://10.0.0.7:8000", 5557, {}) == "tcp://10.0.0.7:5557"
    assert event_endpoint("http://[fd00::7]:8000", 5557, {}) == "tcp://[fd00::7]:5557"
    assert event_endpoint(URL + "/", 5557, {URL: "ipc:///x"}) == "ipc:///x"


@pytest.fixture
async def publisher(tmp_path: Path) -> AsyncIterator[tuple[zmq.asyncio.Socket, str]]:
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.PUB)
    endpoint = f"ipc://{tmp_path}/kv.ipc"
    sock.bind(endpoint)
    yield sock, endpoint
    sock.close(linger=0)
    ctx.term()


@contextlib.asynccontextmanager
async def subscribed(endpoint: str, **options: int) -> AsyncIterator[tuple[KVEventHub, KVIndex, CollectorRegistry]]:
    """A hub subscribed to ``URL``'s events at ``endpoint``, its index and its metrics; closed after."""
    registry = CollectorRegistry()
    index = KVIndex()
    registry.register(IndexCollector(index))
    hub = KVEventHub(index, KVMetrics(registry), endpoints={URL: endpoint}, topic="kv", **options)
    try:
        hub.set_urls([URL])
        yield hub, index, registry
    finally:
        await hub.close()


async def first_batch(pub: zmq.asyncio.Socket, index: KVIndex) -> int:
    """Batches sent until one reaches the index; the next sequence number. PUB drops messages until
    the subscription has propagated (ZMQ's slow joiner), so it keeps sending."""
    seq, end = 0, time.monotonic() + 5
    while len(index) == 0:
        assert time.monotonic() < end, "timed out waiting for the first batch"
        await pub.send_multipart(frames(seq, stored([seq + 1], [0], 1)))
        seq += 1
        await asyncio.sleep(0.02)
    return seq


async def test_a_subscriber_feeds_the_index_until_its_replica_leaves(
    publisher: tuple[zmq.asyncio.Socket, str],
) -> None:
    pub, endpoint = publisher
    async with subscribed(endpoint) as (hub, index, registry):
        seq = await first_batch(pub, index)
        await pub.send_multipart([b"kv", b"\x00", b"junk"])  # skipped, counted
        # A map keyed by an array (msgpack raises TypeError for it): skipped too, the loop goes on.
        await pub.send_multipart([b"kv", seq.to_bytes(8, "big"), b"\x81\x91\x01\x01"])
        await pub.send_multipart([b"other-topic", (seq + 10).to_bytes(8, "big"), b""])  # not subscribed
        await until(lambda: registry.get_sample_value("inferstack_kv_event_batches_malformed_total") == 2, "malformed")
        await pub.send_multipart(frames(seq, stored([999], [0], 1)))
        await until(lambda: index.match([999], [URL]) == {URL: 1}, "a batch after the bad ones applied")
        assert registry.get_sample_value("inferstack_kv_events_total", {"type": "BlockStored"}) >= 1
        assert registry.get_sample_value("inferstack_kv_index_stale", {"replica": URL}) == 0
        assert registry.get_sample_value("inferstack_kv_index_blocks") == len(index)
        hub.set_urls([])
        await until(lambda: len(index) == 0 and URL not in index.replicas, "the replica's entries dropped")


async def test_a_message_over_the_size_bound_is_not_taken_and_the_subscription_recovers(
    publisher: tuple[zmq.asyncio.Socket, str],
) -> None:
    pub, endpoint = publisher
    async with subscribed(endpoint, max_message_bytes=4096) as (_, index, registry):
        seq = await first_batch(pub, index)
        # 8,000 token ids: over 4 KiB. ZMQ drops the connection rather than deliver it.
        await pub.send_multipart(frames(seq, stored([10_000], list(range(8000)), 8000)))
        seq += 1
        # ZMQ does not reconnect after it; the subscriber subscribes again (and PUB drops messages until
        # the new subscription is in): keep sending.
        end = time.monotonic() + 10
        while index.match([20_000], [URL]) != {URL: 1}:
            assert time.monotonic() < end, "the subscription did not recover after the oversized message"
            await pub.send_multipart(frames(seq, stored([20_000], [0], 1)))
            seq += 1
            await asyncio.sleep(0.05)
        assert index.match([10_000], [URL]) == {URL: 0}, "the oversized batch was applied"
        # Subscribed again; its sequence number is missing, so the replica's view was dropped and rebuilt.
        assert registry.get_sample_value("inferstack_kv_event_resubscribes_total") >= 1
        assert registry.get_sample_value("inferstack_kv_index_resyncs_total", {"reason": "gap"}) >= 1


async def sizes_seen(index: KVIndex, done: Callable[[], bool]) -> list[int]:
    """Another coroutine: the index's size at each turn of the loop it gets, until ``done``."""
    seen = []
    while not done():
        seen.append(len(index))
        await asyncio.sleep(0)
    return seen


async def test_a_large_message_is_applied_in_steps_the_loop_serving_others_between_them(
    publisher: tuple[zmq.asyncio.Socket, str],
) -> None:
    # A message just under the 1 MiB bound was decoded and applied in one go: 0.2-0.74 s in which no
    # other request, stream or timer of the gateway ran (bench/kv_event_stall.py measures it).
    pub, endpoint = publisher
    async with subscribed(endpoint) as (hub, index, registry):
        seq = await first_batch(pub, index)
        stored_before = registry.get_sample_value("inferstack_kv_events_total", {"type": "BlockStored"}) or 0
        base, n = len(index), 50_000
        hashes = list(range(1 << 40, (1 << 40) + n))
        watcher = asyncio.create_task(sizes_seen(index, lambda: len(index) == base + n))
        await pub.send_multipart(frames(seq, stored(hashes, [0] * n, 1)))
        partly = {s for s in await asyncio.wait_for(watcher, 10) if base < s < base + n}
        assert len(partly) >= n // HASHES_PER_STEP - 1, "nothing else ran while the message was applied"
        assert index.match(hashes, [URL]) == {URL: n}
        assert registry.get_sample_value("inferstack_kv_events_total", {"type": "BlockStored"}) == stored_before + 1

        # A gap drops the replica's view (50,001 blocks) in steps too.
        watcher = asyncio.create_task(sizes_seen(index, lambda: index.match([5], [URL]) == {URL: 1}))
        await pub.send_multipart(frames(seq + 2, stored([5], [0], 1)))  # seq + 1 never came
        partly = {s for s in await asyncio.wait_for(watcher, 10) if 1 < s < base + n}
        assert len(partly) >= n // HASHES_PER_STEP - 1, "the drop was one step"
        assert len(index) == 1

        # A replica that leaves has its view dropped in steps; one that comes back before that ended
        # has the rest dropped at once.
        await pub.send_multipart(frames(seq + 3, stored(hashes, [0] * n, 1)))
        await until(lambda: len(index) == 1 + n, "the large message applied again")
        watcher = asyncio.create_task(sizes_seen(index, lambda: len(index) == 0))
        hub.set_urls([])
        partly = {s for s in await asyncio.wait_for(watcher, 10) if 0 < s < 1 + n}
        assert len(partly) >= n // HASHES_PER_STEP - 1, "the drop was one step"
        assert URL not in index.replicas
        hub.set_urls([URL])
        seq = await first_batch(pub, index)  # (a new subscription: a new view, from any number)
        await pub.send_multipart(frames(seq, stored(hashes, [0] * n, 1)))
        await until(lambda: index.match(hashes, [URL]) == {URL: n}, "the large message applied again")
        hub.set_urls([])
        hub.set_urls([URL])
        assert len(index) == 0 and index.replicas[URL].last_seq is None
        seq = await first_batch(pub, index)

        # Malformed past its first steps: what was applied of it is dropped with the replica's view (the
        # rest of the message is lost, as in a gap), and the next message builds it again.
        gaps = registry.get_sample_value("inferstack_kv_index_resyncs_total", {"reason": "gap"})
        more = list(range(1 << 41, (1 << 41) + 3 * HASHES_PER_STEP))
        bad = stored([1, 2], [0, 0], 1) | {"block_hashes": [1, "not a hash"]}
        await pub.send_multipart(frames(seq, stored(more, [0] * len(more), 1), bad))
        await until(lambda: registry.get_sample_value("inferstack_kv_event_batches_malformed_total") == 1, "malformed")
        assert len(index) == 0
        assert registry.get_sample_value("inferstack_kv_index_resyncs_total", {"reason": "gap"}) == gaps + 1
        await pub.send_multipart(frames(seq + 1, stored([7], [0], 1)))
        await until(lambda: index.match([7], [URL]) == {URL: 1}, "the next message applied")
        assert len(index) == 1 and index.match(more[:1], [URL]) == {URL: 0}


async def test_a_message_malformed_past_a_large_applied_part_has_its_view_dropped_in_steps(
    publisher: tuple[zmq.asyncio.Socket, str],
) -> None:
    # What was applied of it is dropped as a gap's view is, in steps: dropped at once, 50,000 blocks
    # held the loop as long as applying them did before the steps (an engine can send this again and again).
    pub, endpoint = publisher
    async with subscribed(endpoint) as (_, index, registry):
        seq = await first_batch(pub, index)
        base, n = len(index), 50_000
        hashes = list(range(1 << 42, (1 << 42) + n))
        bad = stored([1, 2], [0, 0], 1) | {"block_hashes": [1, "not a hash"]}

        def malformed() -> bool:
            return registry.get_sample_value("inferstack_kv_event_batches_malformed_total") == 1

        watcher = asyncio.create_task(sizes_seen(index, malformed))
        await pub.send_multipart(frames(seq, stored(hashes, [0] * n, 1), bad))
        seen = await asyncio.wait_for(watcher, 10)
        peak = seen.index(max(seen))
        # (The parts before the one with the bad event are applied: all but its last slices.)
        assert seen[peak] > base + n - 2 * HASHES_PER_STEP, "the message's good parts were not applied first"
        dropping = {s for s in seen[peak:] if 0 < s < seen[peak]}
        assert len(dropping) >= n // HASHES_PER_STEP - 1, "the view was dropped in one step"
        assert len(index) == 0
