"""The block hashes vLLM computes for a prompt, computed in the gateway (``--prefix-caching-hash-algo sha256_cbor``).

vLLM (``vllm/v1/core/kv_cache_utils.py``) cuts the prompt's token ids into full blocks of ``block_size``
tokens and hashes each as ``sha256(cbor2.dumps((parent, tuple(tokens), extra_keys), canonical=True))``,
where ``parent`` is the previous block's 32-byte digest and, for the first block, ``NONE_HASH =
sha256_cbor(seed)`` with the seed ``"vllm-none-hash"`` (or the engine's ``PYTHONHASHSEED`` when set).
``extra_keys`` is None for plain text; a request's ``cache_salt`` adds ``(("cache_salt", salt),)`` to the
first block (LoRA adapters and multimodal inputs add keys this gateway does not compute: such requests
are not matched). The engine publishes the low 64 bits of each digest; so does ``prompt_block_hashes``.

The CBOR is written here rather than with ``cbor2``: the shapes are fixed (an array of a byte string, an
array of unsigned ints and nil or an array of text pairs) and canonical CBOR of those is the shortest
encoding of each item, which a few lines produce twice as fast as a general encoder.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache
from hashlib import sha256

DEFAULT_SEED = "vllm-none-hash"
_MASK64 = (1 << 64) - 1


def _head(major: int, n: int) -> bytes:
    """A CBOR item head: major type and argument, in the shortest form (canonical)."""
    m = major << 5
    if n < 24:
        return bytes((m | n,))
    if n < 0x100:
        return bytes((m | 24, n))
    if n < 0x10000:
        return struct.pack(">BH", m | 25, n)
    if n < 0x100000000:
        return struct.pack(">BI", m | 26, n)
    return struct.pack(">BQ", m | 27, n)


def _text(s: str) -> bytes:
    raw = s.encode()
    return _head(3, len(raw)) + raw


@lru_cache(maxsize=8)
def none_hash(seed: str = DEFAULT_SEED) -> bytes:
    """vLLM's parent digest of a first block: ``sha256_cbor(seed)``."""
    return sha256(_text(seed)).digest()


def _tokens(tokens: Sequence[int]) -> bytes:
    parts = [_head(4, len(tokens))]
    for t in tokens:
        if t < 0:
            raise ValueError("token ids are non-negative")
        parts.append(_head(0, t))
    return b"".join(parts)


def _salt_keys(salt: str) -> bytes:
    # extra_keys = (("cache_salt", salt),): an array of one array of two text strings.
    return _head(4, 1) + _head(4, 2) + _text("cache_salt") + _text(salt)


_NIL = b"\xf6"


def prompt_block_hashes(
    token_ids: Sequence[int],
    block_size: int,
    *,
    seed: str = DEFAULT_SEED,
    cache_salt: str | None = None,
    max_blocks: int | None = None,
) -> list[int]:
    """The 64-bit hashes vLLM publishes for the prompt's full blocks (a trailing partial block has none)."""
    if block_size < 1:
        raise ValueError("block_size must be >= 1")
    count = len(token_ids) // block_size
    if max_blocks is not None:
        count = min(count, max_blocks)
    parent = none_hash(seed)
    out: list[int] = []
    for i in range(count):
        extra = _salt_keys(cache_salt) if (i == 0 and cache_salt) else _NIL
        item = _head(4, 3) + _head(2, 32) + parent + _tokens(token_ids[i * block_size : (i + 1) * block_size]) + extra
        parent = sha256(item).digest()
        out.append(int.from_bytes(parent, "big") & _MASK64)
    return out
