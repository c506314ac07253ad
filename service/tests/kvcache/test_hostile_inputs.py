"""What a client or an engine controls on the KV-event path, at its worst: nothing of it may fail a request."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx
import zmq
import zmq.asyncio

from inferstack.kvcache.blocks import prompt_block_hashes
from inferstack_fake_engine import Behaviour, EngineConfig, running_engine

from ..gateway_harness import running_gateway
from ..test_relay_fake_engine import metric
from .events import frames, stored

TOKENS = list(range(100, 100 + 64))
HEADERS = {"x-inferstack-routing-policy": "precise_prefix"}


async def test_token_ids_no_engine_has_are_routed_without_them_not_failed(tmp_path: Path) -> None:
    """A completions prompt of token ids is hashed as vLLM would: ids it cannot hash (negative, or past
    64 bits) must not turn into a 500; the request is routed without token ids and the engine judges it."""
    ctx = zmq.asyncio.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(f"ipc://{tmp_path}/kv.ipc")
    try:
        async with contextlib.AsyncExitStack() as stack:
            engines = [
                await stack.enter_async_context(running_engine(EngineConfig(behaviour=Behaviour()))) for _ in range(2)
            ]
            # Two replicas, so the scorer decides (one is picked without scoring); the second one is silent.
            endpoints = {engines[0]: f"ipc://{tmp_path}/kv.ipc", engines[1]: f"ipc://{tmp_path}/silent.ipc"}
            url, _ = await stack.enter_async_context(
                running_gateway(engines, kv_events={"enabled": True, "endpoints": endpoints})
            )
            client = await stack.enter_async_context(httpx.AsyncClient())
            # The engine reports a block: its view is fresh, so the scorer hashes every prompt.
            hashes = prompt_block_hashes(TOKENS, 16)[:1]
            seq, end = 0, time.monotonic() + 10
            while metric((await client.get(url.admin + "/metrics")).text, "inferstack_kv_index_blocks") < 1:
                assert time.monotonic() < end, "the gateway never applied a KV event"
                await pub.send_multipart(frames(seq, stored(hashes, TOKENS[:16], 16)))
                seq += 1
                await asyncio.sleep(0.05)
            for bad in (-1, 1 << 64, 1 << 200):
                prompt = [bad, *TOKENS]
                r = await client.post(
                    url + "/v1/completions",
                    json={"model": "fake-model", "prompt": prompt, "max_tokens": 2},
                    headers=HEADERS,
                )
                assert r.status_code == 200, (bad, r.status_code, r.text)
            text = (await client.get(url.admin + "/metrics")).text
            assert metric(text, "inferstack_routing_decisions_total", policy="precise_prefix", reason="no_tokens") == 3
    finally:
        pub.close(linger=0)
        ctx.term()
