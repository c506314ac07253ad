"""Subscribers against a real ZMQ publisher (loopback ipc): join subscribes, leave forgets, bad messages skip."""

from __future__ import annotations

import asyncio
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


async def test_a_subscriber_feeds_the_index_until_its_replica_leaves(
    publisher: tuple[zmq.asyncio.Socket, str],
) -> None:
    pub, endpoint = publisher
    registry = CollectorRegistry()
    index = KVIndex()
    registry.register(IndexCollector(index))
    hub = KVEventHub(index, KVMetrics(registry), endpoints={URL: endpoint}, topic="kv")
    try:
        hub.set_urls([URL])
        seq, end = 0, time.monotonic() + 5
        # PUB drops messages until the subscription has propagated (ZMQ's slow joiner): keep sending.
        while len(index) == 0:
            assert time.monotonic() < end, "timed out waiting for the first batch"
            await pub.send_multipart(frames(seq, stored([seq + 1], [0], 1)))
            seq += 1
            await asyncio.sleep(0.02)
        await pub.send_multipart([b"kv", b"\x00", b"junk"])  # skipped, counted
        await pub.send_multipart([b"other-topic", (seq + 10).to_bytes(8, "big"), b""])  # not subscribed
        await until(lambda: registry.get_sample_value("inferstack_kv_event_batches_malformed_total") == 1, "malformed")
        assert registry.get_sample_value("inferstack_kv_events_total", {"type": "BlockStored"}) >= 1
        assert registry.get_sample_value("inferstack_kv_index_stale", {"replica": URL}) == 0
        assert registry.get_sample_value("inferstack_kv_index_blocks") == len(index)
        hub.set_urls([])
        assert len(index) == 0 and URL not in index.replicas
    finally:
        await hub.close()
