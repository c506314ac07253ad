"""``precise_prefix`` through a whole gateway: fake engines serve, a test-owned ZMQ publisher plays one
engine's KV events, and decisions follow the events; without events the profile falls back."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import zmq
import zmq.asyncio

from inferstack.kvcache.blocks import prompt_block_hashes
from inferstack_fake_engine import Behaviour, EngineConfig, running_engine

from ..gateway_harness import GatewayURL, running_gateway
from ..test_relay_fake_engine import metric
from ..test_routing_api import served_by
from .events import publish_until_indexed, stored

TOKENS = list(range(100, 100 + 64))  # a token-id prompt: no /tokenize needed
BODY = {"model": "fake-model", "prompt": TOKENS, "max_tokens": 2}
HEADERS = {"x-inferstack-routing-policy": "precise_prefix"}


@contextlib.asynccontextmanager
async def precise_gateway(
    tmp_path: Path, replicas: int, publishing: int
) -> AsyncIterator[tuple[zmq.asyncio.Socket, list[str], GatewayURL, httpx.AsyncClient]]:
    """``replicas`` fake engines behind a gateway with KV events on; the yielded socket publishes as
    engine ``publishing`` (the others stay silent)."""
    ctx = zmq.asyncio.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(f"ipc://{tmp_path}/kv-{publishing}.ipc")
    try:
        async with contextlib.AsyncExitStack() as stack:
            engines = [
                await stack.enter_async_context(running_engine(EngineConfig(behaviour=Behaviour())))
                for _ in range(replicas)
            ]
            endpoints = {e: f"ipc://{tmp_path}/kv-{i}.ipc" for i, e in enumerate(engines)}
            url, _ = await stack.enter_async_context(
                running_gateway(engines, kv_events={"enabled": True, "endpoints": endpoints})
            )
            client = await stack.enter_async_context(httpx.AsyncClient())
            yield pub, engines, url, client
    finally:
        pub.close(linger=0)
        ctx.term()


async def test_requests_go_where_the_events_say_the_prefix_is(tmp_path: Path) -> None:
    async with precise_gateway(tmp_path, 3, publishing=2) as (pub, engines, url, client):
        # No events yet: the profile falls back to the approximate scorer, and says so.
        assert (await client.post(url + "/v1/completions", json=BODY, headers=HEADERS)).status_code == 200
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_routing_decisions_total", policy="precise_prefix", reason="no_events") == 1
        # Engine 2 reports the prompt's first three 16-token blocks (ZMQ drops what precedes the
        # subscription: publish until the gateway has applied it).
        hashes = prompt_block_hashes(TOKENS, 16)[:3]
        await publish_until_indexed(pub, client, url.admin, 3, stored(hashes, TOKENS[:48], 16))
        before = await served_by(client, engines)
        for _ in range(3):
            assert (await client.post(url + "/v1/completions", json=BODY, headers=HEADERS)).status_code == 200
        after = await served_by(client, engines)
        assert after[2] - before[2] == 3
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_routing_decisions_total", policy="precise_prefix", reason="prefix_hit") == 3
        assert metric(text, "inferstack_kv_index_replica_blocks", replica=engines[2]) == 3
