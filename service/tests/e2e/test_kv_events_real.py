"""The gateway computes the block hashes a real vLLM publishes, for chat and completions requests.

The session engine publishes its KV events (``devstack.start_engine`` always turns them on); a
``KVEventHub`` subscribes as the gateway does, the request's token ids come from the engine's
``/tokenize`` as the gateway gets them, and ``prompt_block_hashes`` must name exactly the blocks the
engine reports storing: same hashes, same chain, same block size (learned from the events).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from inferstack.kvcache.blocks import prompt_block_hashes
from inferstack.kvcache.index import KVIndex
from inferstack.kvcache.metrics import KVMetrics
from inferstack.kvcache.subscriber import KVEventHub
from inferstack.kvcache.tokenize import engine_token_ids, tokenize_body
from inferstack_devstack import kv_events_endpoint

from ..waiting import until

pytestmark = pytest.mark.vllm

WORDS = ("river", "stone", "ledger", "harbour", "winter", "signal", "garden", "copper", "meadow", "lantern")


def text(rng: random.Random, words: int) -> str:
    return f"{uuid.uuid4()} " + " ".join(rng.choice(WORDS) for _ in range(words))


async def generate(session: aiohttp.ClientSession, url: str, kind: str, payload: dict[str, Any]) -> None:
    path = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
    async with session.post(url + path, json={"model": "tiny-llama", "max_tokens": 1, **payload}) as resp:
        assert resp.status == 200, await resp.text()


async def test_gateway_block_hashes_equal_the_engines_published_ones(vllm_engine: str, run_dir: Path) -> None:
    rng = random.Random(14)
    index = KVIndex()
    hub = KVEventHub(
        index, KVMetrics(CollectorRegistry()), endpoints={vllm_engine: kv_events_endpoint(run_dir, vllm_engine)}
    )
    try:
        async with aiohttp.ClientSession() as session:
            hub.set_urls([vllm_engine])
            # ZMQ drops what is published before the subscription lands: warm up until events flow.
            end = time.monotonic() + 60
            while index.block_size(vllm_engine) is None:
                assert time.monotonic() < end, "no KV events from the engine within 60 s"
                await generate(session, vllm_engine, "completions", {"prompt": text(rng, 300)})
                await asyncio.sleep(0.2)
            block_size = index.block_size(vllm_engine)
            assert block_size is not None
            requests = {
                "chat": {
                    "messages": [
                        {"role": "system", "content": text(rng, 500)},
                        {"role": "user", "content": "Which word comes first?"},
                    ]
                },
                "completions": {"prompt": text(rng, 500)},
            }
            for kind, payload in requests.items():
                body = tokenize_body("tiny-llama", payload, kind)
                assert body is not None
                tokens = await engine_token_ids(session, vllm_engine, body, 30)
                assert tokens is not None
                ours = prompt_block_hashes(tokens, block_size)
                assert len(ours) >= 2, f"{kind}: the prompt should span several {block_size}-token blocks"
                assert index.match(ours, [vllm_engine])[vllm_engine] == 0  # a new prompt: nothing cached yet
                await generate(session, vllm_engine, kind, payload)
                await until(
                    lambda ours=ours: index.match(ours, [vllm_engine])[vllm_engine] == len(ours),
                    f"{kind}: the engine to publish the {len(ours)} blocks the gateway computed",
                    within=30.0,
                )
    finally:
        await hub.close()
