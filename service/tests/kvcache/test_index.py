"""The KV index: credits what engines report, forgets on removal, clear, gap or restart; bounded; staleness."""

from __future__ import annotations

import pytest

from inferstack.kvcache.index import KVIndex
from inferstack.kvcache.wire import decode

from .events import CLEARED, frames, removed, stored

A, B = "http://a:8000", "http://b:8000"


def apply(index: KVIndex, url: str, seq: int, *events: dict[str, object], now: float = 0.0) -> None:
    index.apply(url, decode(frames(seq, *events, ts=100.0)), now, 100.25)


def test_stored_blocks_match_as_a_leading_run_per_replica() -> None:
    index = KVIndex()
    apply(index, A, 0, stored([1, 2, 3], [0] * 3, 1))
    apply(index, B, 0, stored([1], [0], 1))
    assert index.match([1, 2, 3, 4], [A, B]) == {A: 3, B: 1}
    assert index.match([9, 1], [A, B]) == {A: 0, B: 0}
    assert index.block_size(A) == 1
    assert index.replicas[A].lag == pytest.approx(0.25)


def test_removed_and_cleared_blocks_are_forgotten_for_that_replica_only() -> None:
    index = KVIndex()
    apply(index, A, 0, stored([1, 2], [0, 0], 1))
    apply(index, B, 0, stored([1, 2], [0, 0], 1))
    apply(index, A, 1, removed([2]))
    assert index.match([1, 2], [A, B]) == {A: 1, B: 2}
    apply(index, B, 1, CLEARED)
    assert index.match([1, 2], [A, B]) == {A: 1, B: 0}
    assert index.resyncs["cleared"] == 1
    assert len(index) == 1


def test_a_sequence_gap_or_a_restart_drops_the_replicas_view() -> None:
    index = KVIndex()
    apply(index, A, 5, stored([1], [0], 1))  # joining late: any first number is fine
    apply(index, A, 7, stored([2], [0], 1))  # 6 was lost: its removals are unknown
    assert index.match([1], [A]) == {A: 0} and index.match([2], [A]) == {A: 1}
    apply(index, A, 0, stored([3], [0], 1))  # numbering restarted: a new engine process
    assert index.match([2], [A]) == {A: 0} and index.match([3], [A]) == {A: 1}
    assert index.resyncs == {"gap": 1, "restart": 1, "cleared": 0}


def test_capacity_evicts_the_least_recently_stored_or_matched_hash() -> None:
    index = KVIndex(capacity=3)
    apply(index, A, 0, stored([1, 2, 3], [0] * 3, 1))
    index.match([1], [A])  # 1 is now the most recently used
    apply(index, A, 1, stored([4], [0], 1))
    assert len(index) == 3 and index.evicted == 1
    assert index.match([2], [A]) == {A: 0} and index.match([1], [A]) == {A: 1}
    assert 2 not in index.replicas[A].held


def test_a_replica_that_leaves_takes_its_blocks_with_it() -> None:
    index = KVIndex()
    apply(index, A, 0, stored([1], [0], 1))
    apply(index, B, 0, stored([1], [0], 1))
    index.leave(A)
    assert index.match([1], [A, B]) == {A: 0, B: 1}
    assert A not in index.replicas


def test_a_view_is_fresh_after_events_and_stale_when_it_owes_events_too_long() -> None:
    index = KVIndex(stale_after=5)
    index.join(A)
    assert not index.fresh(A, 0)  # no events yet: block size unknown
    apply(index, A, 0, stored([1], [0], 1), now=0)
    assert index.fresh(A, 100)  # idle engines publish nothing: silence alone is not staleness
    index.expect(A, 10)
    assert index.fresh(A, 15) and not index.fresh(A, 15.5)
    apply(index, A, 1, stored([2], [0], 1), now=16)
    assert index.fresh(A, 30)
