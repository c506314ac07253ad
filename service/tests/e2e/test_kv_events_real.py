"""The gateway computes the block hashes a real vLLM publishes, for chat and completions requests.

The session engine publishes its KV events (``devstack.start_engine`` always turns them on); a
``KVEventHub`` subscribes as the gateway does, the request's token ids come from the engine's
``/tokenize`` as the gateway gets them, and ``prompt_block_hashes`` must name exactly the blocks the
engine reports storing: same hashes, same chain, same block size (learned from the events).
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest

from inferstack.kvcache.blocks import prompt_block_hashes

from ..waiting import until
from .kv_engine import engine_ids, generate, live_index

pytestmark = pytest.mark.vllm

WORDS = ("river", "stone", "ledger", "harbour", "winter", "signal", "garden", "copper", "meadow", "lantern")


def text(rng: random.Random, words: int) -> str:
    return f"{uuid.uuid4()} " + " ".join(rng.choice(WORDS) for _ in range(words))


async def test_gateway_block_hashes_equal_the_engines_published_ones(vllm_engine: str, run_dir: Path) -> None:
    rng = random.Random(14)
    async with live_index(vllm_engine, run_dir, lambda: text(rng, 300)) as (session, index, block_size):
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
            ours = prompt_block_hashes(await engine_ids(session, vllm_engine, kind, payload), block_size)
            assert len(ours) >= 2, f"{kind}: the prompt should span several {block_size}-token blocks"
            assert index.match(ours, [vllm_engine])[vllm_engine] == 0  # a new prompt: nothing cached yet
            await generate(session, vllm_engine, kind, payload)
            await until(
                lambda ours=ours: index.match(ours, [vllm_engine])[vllm_engine] == len(ours),
                f"{kind}: the engine to publish the {len(ours)} blocks the gateway computed",
                within=30.0,
            )
