"""vLLM's KV-cache event stream, decoded: ZMQ multipart ``(topic, seq, payload)``.

``seq`` is an 8-byte big-endian counter that starts at 0 when the engine starts and grows by one per
batch; ``payload`` is a msgpack ``KVEventBatch`` (``vllm/distributed/kv_events.py``): an array
``[ts, events, data_parallel_rank?]`` whose events are maps tagged by ``type``:

- ``BlockStored``: ``block_hashes`` (a chain: each block's hash covers its parent),
  ``parent_block_hash`` (of the block before the first, or nil), ``token_ids``, ``block_size``, ...
- ``BlockRemoved``: ``block_hashes``.
- ``AllBlocksCleared``: the engine dropped its whole prefix cache.

Block hashes arrive as 64-bit integers (vLLM's default ``VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1``: the
low 8 bytes of the sha256) or, with that switched off, as the full digest: both become the same int.
Anything malformed raises ``ValueError``: one bad message must not stop a subscriber.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class BlockStored:
    block_hashes: tuple[int, ...]
    parent_block_hash: int | None
    token_ids: tuple[int, ...]
    block_size: int


@dataclass(frozen=True, slots=True)
class BlockRemoved:
    block_hashes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AllBlocksCleared:
    pass


Event = BlockStored | BlockRemoved | AllBlocksCleared


@dataclass(frozen=True, slots=True)
class Batch:
    seq: int
    ts: float
    """The engine's wall clock when it published the batch (``time.time()``): lag = now - ts."""
    events: tuple[Event, ...]


def external_hash(value: object) -> int:
    """A block hash as vLLM publishes it, as the 64-bit int the index keys on."""
    if isinstance(value, bool):
        raise ValueError("a block hash is not a bool")
    if isinstance(value, int):
        return value & _MASK64
    if isinstance(value, bytes | bytearray):
        return int.from_bytes(value, "big") & _MASK64
    raise ValueError(f"a block hash must be an int or bytes, not {type(value).__name__}")


def decode(frames: Sequence[bytes]) -> Batch:
    if len(frames) != 3 or len(frames[1]) != 8:
        raise ValueError("a KV event message is three frames: topic, 8-byte sequence number, payload")
    seq = int.from_bytes(frames[1], "big")
    try:
        body = msgpack.unpackb(frames[2], raw=False, strict_map_key=False)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        # TypeError: a map keyed by an array or a map (unhashable in Python).
        raise ValueError(f"undecodable KV event payload: {exc}") from None
    if not isinstance(body, list) or len(body) < 2 or not isinstance(body[1], list):
        raise ValueError("a KVEventBatch is an array [ts, events, ...]")
    ts = body[0]
    if not isinstance(ts, int | float) or isinstance(ts, bool) or not math.isfinite(ts):
        raise ValueError("a KVEventBatch's ts is a finite number")
    return Batch(seq, float(ts), tuple(_event(e) for e in body[1]))


# Positional field order of the array form (msgspec array_like structs), after the tag.
_STORED_FIELDS = ("block_hashes", "parent_block_hash", "token_ids", "block_size")


def _event(raw: Any) -> Event:
    kind: Any
    if isinstance(raw, list) and raw and isinstance(raw[0], str):
        fields: dict[str, Any] = dict(zip(_STORED_FIELDS, raw[1:], strict=False))
        kind = raw[0]
        if kind == "BlockRemoved":
            fields = {"block_hashes": raw[1] if len(raw) > 1 else None}
    elif isinstance(raw, dict):
        fields, kind = raw, raw.get("type")
    else:
        raise ValueError("a KV event is a tagged map or array")
    if kind == "AllBlocksCleared":
        return AllBlocksCleared()
    hashes = fields.get("block_hashes")
    if not isinstance(hashes, list):
        raise ValueError(f"{kind} without block_hashes")
    block_hashes = tuple(external_hash(h) for h in hashes)
    if kind == "BlockRemoved":
        return BlockRemoved(block_hashes)
    if kind != "BlockStored":
        raise ValueError(f"unknown KV event type {kind!r}")
    parent = fields.get("parent_block_hash")
    tokens, size = fields.get("token_ids"), fields.get("block_size")
    if not isinstance(tokens, list) or not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError("BlockStored needs token_ids and a positive block_size")
    return BlockStored(block_hashes, None if parent is None else external_hash(parent), tuple(tokens), size)
