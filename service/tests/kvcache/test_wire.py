"""Decoding vLLM's KV event messages; malformed ones raise ValueError (the subscriber skips them)."""

from __future__ import annotations

import random

import msgpack
import pytest

from inferstack.kvcache.wire import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    decode,
    decode_parts,
    external_hash,
)

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


def test_a_message_in_parts_is_the_message_in_slices_of_at_most_so_many_hashes() -> None:
    message = frames(5, stored(list(range(10, 20)), list(range(40)), 4, parent=9), removed([1, 2, 3]), CLEARED, ts=1.5)
    parts = list(decode_parts(message, 4))
    assert [(p.seq, p.ts, p.part) for p in parts] == [(5, 1.5, 0), (5, 1.5, 1), (5, 1.5, 2), (5, 1.5, 3)]
    # Each slice's parent is the block before it and its tokens its blocks'; later slices are marked.
    assert [p.events for p in parts] == [
        (BlockStored((10, 11, 12, 13), 9, tuple(range(16)), 4),),
        (BlockStored((14, 15, 16, 17), 13, tuple(range(16, 32)), 4, True),),
        (BlockStored((18, 19), 17, tuple(range(32, 40)), 4, True), BlockRemoved((1, 2, 3))),
        (AllBlocksCleared(),),
    ]
    assert list(decode_parts(message, 100)) == [decode(message)]  # small enough: one part, as sent
    assert list(decode_parts(frames(6), 4)) == [decode(frames(6))]  # no events: one empty part
    # Malformed: raised when its part is reached, after the parts before it.
    bad = frames(7, stored(list(range(8)), [0] * 8, 1), removed(["x"]))  # type: ignore[list-item]
    parts_iter = decode_parts(bad, 4)
    assert len(next(parts_iter).events[0].block_hashes) == 4  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        list(parts_iter)
