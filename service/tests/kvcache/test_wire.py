"""Decoding vLLM's KV event messages; malformed ones raise ValueError (the subscriber skips them)."""

from __future__ import annotations

import random

import msgpack
import pytest

from inferstack.kvcache.wire import AllBlocksCleared, BlockRemoved, BlockStored, decode, external_hash

from .events import CLEARED, frames, removed, stored


def test_a_batch_decodes_in_order_with_its_sequence_number_and_timestamp() -> None:
    batch = decode(frames(41, stored([1, 2], list(range(256)), 128, parent=9), removed([1]), CLEARED, ts=12.5))
    assert batch.seq == 41 and batch.ts == 12.5
    assert batch.events == (
        BlockStored((1, 2), 9, tuple(range(256)), 128),
        BlockRemoved((1,)),
        AllBlocksCleared(),
    )


def test_full_digest_hashes_become_the_published_64_bit_ints() -> None:
    digest = bytes(range(32))
    assert external_hash(digest) == int.from_bytes(digest[-8:], "big")
    assert external_hash(2**70 + 5) == 5


def test_the_array_form_decodes_too() -> None:
    events = [["BlockStored", [7], None, [1, 2], 2], ["BlockRemoved", [7]]]
    raw = [b"kv", (3).to_bytes(8, "big"), msgpack.packb([1.0, events])]
    assert decode(raw).events == (BlockStored((7,), None, (1, 2), 2), BlockRemoved((7,)))


@pytest.mark.parametrize(
    "bad",
    [
        [b"kv", b"\x00"],
        [b"kv", b"\x00" * 4, b""],
        [b"kv", b"\x00" * 8, b"\xc1"],
        [b"kv", b"\x00" * 8, msgpack.packb({"ts": 1})],
        [b"kv", b"\x00" * 8, msgpack.packb(["x", []])],
        frames(0, {"type": "BlockStored", "block_hashes": [1]}),
        frames(0, stored([1], [1], True)),  # type: ignore[arg-type]  (msgpack's true is no block size)
        frames(0, {"type": "Mystery", "block_hashes": [1]}),
        frames(0, {"type": "BlockRemoved", "block_hashes": ["x"]}),
        frames(0, 17),  # type: ignore[arg-type]
        [b"kv", b"\x00" * 8, b"\x81\x91\x01\x01"],  # a map keyed by an array: TypeError in msgpack
        [b"kv", b"\x00" * 8, msgpack.packb([float("nan"), []])],
        [b"kv", b"\x00" * 8, msgpack.packb([True, []])],
    ],
)
def test_malformed_messages_raise_value_error(bad: list[bytes]) -> None:
    with pytest.raises(ValueError):
        decode(bad)


def test_mutated_messages_decode_or_raise_value_error_only() -> None:
    """Seeded fuzz: bytes of a valid payload flipped, dropped, duplicated or replaced by msgpack
    markers (maps, arrays, ext, nil). Anything but ValueError would end a subscriber's loop."""
    rng = random.Random(14)
    valid = frames(1, stored([1, 2], list(range(8)), 4, parent=3), removed([1]), CLEARED, ts=2.5)[2]
    markers = [0x80, 0x81, 0x90, 0x91, 0xC0, 0xC1, 0xC3, 0xD4, 0xDC, 0xDE, 0xCB, 0xA4]
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(5000):
        payload = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(payload))
            match rng.randrange(4):
                case 0:
                    payload[at] ^= 1 << rng.randrange(8)
                case 1:
                    del payload[at]
                case 2:
                    payload[at:at] = payload[at : at + rng.randint(1, 8)]
                case _:
                    payload[at] = rng.choice(markers)
        try:
            decode([b"kv", b"\x00" * 8, bytes(payload)])
        except ValueError:
            outcomes["refused"] += 1
        else:
            outcomes["decoded"] += 1
    assert outcomes["refused"] > 1000 and outcomes["decoded"] > 100, outcomes
