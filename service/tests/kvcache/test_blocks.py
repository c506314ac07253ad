"""The gateway's block hashes against vLLM's formula written with the reference CBOR encoder (cbor2)."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import cbor2
import pytest

from inferstack.kvcache.blocks import DEFAULT_SEED, none_hash, prompt_block_hashes


def sha256_cbor(value: Any) -> bytes:  # vllm/utils/hashing.py
    return hashlib.sha256(cbor2.dumps(value, canonical=True)).digest()


def vllm_hashes(tokens: list[int], block_size: int, seed: str = DEFAULT_SEED, salt: str | None = None) -> list[int]:
    """vllm/v1/core/kv_cache_utils.py: hash_block_tokens chained over full blocks, published as low 64 bits."""
    parent = sha256_cbor(seed)
    out = []
    for i in range(len(tokens) // block_size):
        extra = (("cache_salt", salt),) if (i == 0 and salt) else None
        parent = sha256_cbor((parent, tuple(tokens[i * block_size : (i + 1) * block_size]), extra))
        out.append(int.from_bytes(parent, "big") & ((1 << 64) - 1))
    return out


def test_none_hash_is_sha256_cbor_of_the_seed() -> None:
    assert none_hash() == sha256_cbor("vllm-none-hash")
    assert none_hash("42") == sha256_cbor("42")


@pytest.mark.parametrize("block_size", [1, 16, 128])
def test_hashes_equal_vllms_for_every_token_id_width(block_size: int) -> None:
    rng = random.Random(block_size)
    # Token ids spanning every CBOR integer width (1, 2, 3, 5 and 9 bytes).
    widths = [5, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32]
    tokens = [rng.choice([*widths, rng.randrange(200_000)]) for _ in range(400)]
    assert prompt_block_hashes(tokens, block_size) == vllm_hashes(tokens, block_size)


def test_cache_salt_and_seed_change_every_hash_like_vllms() -> None:
    tokens = list(range(300))
    salted = prompt_block_hashes(tokens, 128, cache_salt="tenant-a")
    assert salted == vllm_hashes(tokens, 128, salt="tenant-a")
    assert prompt_block_hashes(tokens, 128, seed="7") == vllm_hashes(tokens, 128, seed="7")
    assert not set(salted) & set(prompt_block_hashes(tokens, 128))


def test_only_full_blocks_are_hashed_and_max_blocks_bounds_the_work() -> None:
    assert prompt_block_hashes(list(range(127)), 128) == []
    assert len(prompt_block_hashes(list(range(1000)), 16, max_blocks=10)) == 10
    with pytest.raises(ValueError):
        prompt_block_hashes([1], 0)
