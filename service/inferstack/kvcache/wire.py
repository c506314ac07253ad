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

``decode`` gives a message as one ``Batch``; ``decode_parts`` as parts of at most so many block
hashes each (an event with more is split into slices), decoded one part at a time as they are asked
for: the subscriber applies a large message part by part, letting the event loop run between them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
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
    continued: bool = False
    """A later slice of an event ``decode_parts`` split (the event is counted at its first slice)."""


@dataclass(frozen=True, slots=True)
class BlockRemoved:
    block_hashes: tuple[int, ...]
    continued: bool = False


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
    part: int = 0
    """0: the message's first (or only) part; a later one (``decode_parts``) carries on from it, under
    the same sequence number."""


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
    """The whole message as one batch, its events as the engine sent them."""
    seq, ts, raw = _unpack(frames)
    return Batch(seq, ts, tuple(event for e in raw for event in _slices(e, None)))


def decode_parts(frames: Sequence[bytes], hashes_per_part: int) -> Iterator[Batch]:
    """The message as batches of at most ``hashes_per_part`` block hashes (an event without hashes
    weighs one), each decoded when asked for: the work per part is bounded, whatever the message
    holds. A malformed event raises when its part is reached, after the parts before it."""
    seq, ts, raw = _unpack(frames)
    part, events, weight = 0, [], 0
    for e in raw:
        for event in _slices(e, hashes_per_part):
            events.append(event)
            weight += len(event.block_hashes) if not isinstance(event, AllBlocksCleared) else 1
            if weight >= hashes_per_part:
                yield Batch(seq, ts, tuple(events), part)
                part, events, weight = part + 1, [], 0
    if events or part == 0:
        yield Batch(seq, ts, tuple(events), part)


def _unpack(frames: Sequence[bytes]) -> tuple[int, float, list[Any]]:
    """The sequence number, the engine's time and the raw events (msgpack's, in C: about 20 ms a MiB)."""
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
    return seq, float(ts), body[1]


# Positional field order of the array form (msgspec array_like structs), after the tag.
_STORED_FIELDS = ("block_hashes", "parent_block_hash", "token_ids", "block_size")


def _slices(raw: Any, size: int | None) -> Iterator[Event]:
    """The event, or its slices of at most ``size`` block hashes (None: whole)."""
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
        yield AllBlocksCleared()
        return
    hashes = fields.get("block_hashes")
    if not isinstance(hashes, list):
        raise ValueError(f"{kind} without block_hashes")
    step = max(1, len(hashes) if size is None else size)
    starts = range(0, max(1, len(hashes)), step)
    if kind == "BlockRemoved":
        for i in starts:
            yield BlockRemoved(tuple(external_hash(h) for h in hashes[i : i + step]), i > 0)
        return
    if kind != "BlockStored":
        raise ValueError(f"unknown KV event type {kind!r}")
    parent = fields.get("parent_block_hash")
    tokens, block = fields.get("token_ids"), fields.get("block_size")
    if not isinstance(tokens, list) or not isinstance(block, int) or isinstance(block, bool) or block < 1:
        raise ValueError("BlockStored needs token_ids and a positive block_size")
    parent_hash = None if parent is None else external_hash(parent)
    if step >= len(hashes):  # whole, as sent
        yield BlockStored(tuple(external_hash(h) for h in hashes), parent_hash, tuple(tokens), block)
        return
    for i in starts:  # each slice's parent is the block before it, its tokens its blocks'
        chunk = tuple(external_hash(h) for h in hashes[i : i + step])
        before = parent_hash if i == 0 else external_hash(hashes[i - 1])
        yield BlockStored(chunk, before, tuple(tokens[i * block : (i + step) * block]), block, i > 0)
