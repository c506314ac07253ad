"""The real engine's side of the KV-event tests: requests to it, its token ids, and a subscription
to its events that is known to be live (ZMQ drops what is published before a subscription lands)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from inferstack.kvcache.index import KVIndex
from inferstack.kvcache.metrics import KVMetrics
from inferstack.kvcache.subscriber import KVEventHub
from inferstack.kvcache.tokenize import engine_token_ids, tokenize_body
from inferstack_devstack import kv_events_endpoint

MODEL = "tiny-llama"


async def generate(session: aiohttp.ClientSession, url: str, kind: str, payload: dict[str, Any]) -> None:
    path = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
    async with session.post(url + path, json={"model": MODEL, "max_tokens": 1, **payload}) as resp:
        assert resp.status == 200, await resp.text()


async def engine_ids(session: aiohttp.ClientSession, url: str, kind: str, payload: dict[str, Any]) -> list[int]:
    body = tokenize_body(MODEL, payload, kind)
    assert body is not None
    tokens = await engine_token_ids(session, url, body, 30)
    assert tokens is not None
    return tokens


@asynccontextmanager
async def live_index(
    engine: str, run_dir: Path, new_prompt: Callable[[], str]
) -> AsyncIterator[tuple[aiohttp.ClientSession, KVIndex, int]]:
    """A session to the engine, an index fed by its events as the gateway's is, and its block size,
    once events flow: new prompts are sent until the first events arrive (60 s at most)."""
    index = KVIndex()
    hub = KVEventHub(index, KVMetrics(CollectorRegistry()), endpoints={engine: kv_events_endpoint(run_dir, engine)})
    try:
        async with aiohttp.ClientSession() as session:
            hub.set_urls([engine])
            end = time.monotonic() + 60
            while (block_size := index.block_size(engine)) is None:
                assert time.monotonic() < end, "no KV events from the engine within 60 s"
                await generate(session, engine, "completions", {"prompt": new_prompt()})
                await asyncio.sleep(0.2)
            yield session, index, block_size
    finally:
        await hub.close()
