"""Subscribers against a real ZMQ publisher (loopback ipc): join subscribes, leave forgets, bad messages skip."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
from prometheus_client import CollectorRegistry

from inferstack.kvcache.index import KVIndex
from inferstack.kvcache.metrics import IndexCollector, KVMetrics
from inferstack.kvcache.subscriber import KVEventHub, event_endpoint

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
        assert len(index) == 0 and URL not in index.replicas


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
