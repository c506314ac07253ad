"""Prompt block hashes and rendezvous ranking: the two hashes routing needs.

The gateway has no tokenizer and engines differ in KV block size (128 tokens on CPU vLLM, 16 on
GPUs), so prompts are cut into fixed-size *character* blocks. A block's hash covers the previous
block's hash, and the first covers the model: equal hashes mean equal prefixes of the same model.
The block size only sets how finely prefixes are told apart; it need not match the engine's.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b


def prefix_chain(model: str, prompt: str, block_chars: int, max_blocks: int) -> list[bytes]:
    """Hashes of the prompt's leading full blocks, at most ``max_blocks`` (bounds the work per request)."""
    count = min(len(prompt) // block_chars, max_blocks)
    if count <= 0:
        return []  # shorter than a block: no hash to make, not even the model's
    prev = blake2b(model.encode(), digest_size=8).digest()
    out: list[bytes] = []
    for i in range(count):
        prev = blake2b(prompt[i * block_chars : (i + 1) * block_chars].encode(), digest_size=8, key=prev).digest()
        out.append(prev)
    return out


def rendezvous_order(key: bytes, urls: Iterable[str]) -> list[str]:
    """URLs by descending highest-random-weight score for ``key``: a stable preference per key.

    Adding or removing a replica moves only the keys whose top choice it was, and every gateway
    replica computes the same order without sharing state.
    """
    return sorted(urls, key=lambda url: blake2b(url.encode(), digest_size=8, key=key).digest(), reverse=True)
