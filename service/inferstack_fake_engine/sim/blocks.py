"""Block hashes of a prompt, as a prefix-caching engine computes them.

Tokens are 4-character slices of the prompt (see ``fake_engine.text``); a block is ``block_size`` tokens.
Each block's hash covers the previous block's hash and the model, so equal hashes mean equal prefixes
(vLLM chains its block hashes the same way). Only full blocks are hashed: a partial last block is
never reused by vLLM either.
"""

from __future__ import annotations

from hashlib import blake2b

from ..text import CHARS_PER_TOKEN


def block_hashes(
    model: str,
    text: str,
    block_size: int,
    limit: int | None = None,
    known: list[bytes] | None = None,
) -> list[bytes]:
    """Hash chain of the full blocks of ``text`` (at most ``limit`` blocks).

    ``known``: the chain of a prefix of ``text``, already computed; only the blocks after it are
    hashed (the caller vouches that it belongs to this text and model).
    """
    width = block_size * CHARS_PER_TOKEN
    count = len(text) // width
    if limit is not None:
        count = min(count, limit)
    out = list(known[:count]) if known else []
    prev = out[-1] if out else blake2b(model.encode(), digest_size=16).digest()
    for i in range(len(out), count):
        prev = blake2b(prev + text[i * width : (i + 1) * width].encode(), digest_size=16).digest()
        out.append(prev)
    return out
