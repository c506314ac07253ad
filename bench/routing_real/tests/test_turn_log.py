"""The turn log's account of a lost prefix: which removal cut the hit, and when it was made against the send."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # last: bench/routing has a workload.py too

from turn_log import TimedIndex, survival_oracle, where_tokens_went, why_lost

from inferstack.kvcache.wire import Batch, BlockRemoved, BlockStored

A, B = "http://a", "http://b"
CHAIN = [11, 12, 13]


def index() -> TimedIndex:
    """A stores the chain at 100 s; block 12 is removed by a step published at 101 s, block 11 at 103 s."""
    ix = TimedIndex()
    ix.apply(A, Batch(1, 100.0, (BlockStored(tuple(CHAIN), None, (), 128),)), 0.0, 100.1)
    ix.apply(A, Batch(2, 101.0, (BlockRemoved((12,)),)), 0.0, 101.5)  # applied half a second late
    ix.apply(A, Batch(3, 103.0, (BlockRemoved((11,)),)), 0.0, 103.1)
    return ix


def test_the_first_block_lost_decides_and_its_removal_is_placed_against_the_send() -> None:
    removals = index().removals
    # Hit 1 of 3 held: block 12 was lost; its step ran from the batch at 100 s to its own at 101 s.
    assert why_lost(removals, A, CHAIN, 3, 1, sent=100.5) == "evicted_in_step_at_send"
    assert why_lost(removals, A, CHAIN, 3, 1, sent=100.0) == "evicted_after_send"
    # Published at 101 s but applied at 101.5 s: a view read at 101.2 s was late.
    assert why_lost(removals, A, CHAIN, 3, 1, sent=101.2) == "removed_before_send"
    # Hit nothing: block 11 decides (removed by the step published at 103 s, scheduled after 101 s).
    assert why_lost(removals, A, CHAIN, 3, 0, sent=101.2) == "evicted_in_step_at_send"
    assert why_lost(removals, A, CHAIN, 3, 3, sent=101.2) == "none"
    assert why_lost(removals, B, CHAIN, 3, 0, sent=101.2) == "not_removed"


def test_the_survival_oracle_takes_what_other_replicas_kept_until_the_first_token() -> None:
    turn = {"cached": 128, "upstream": A, "held": {A: 384, B: 256}, "held_at_first_token": {A: 384, B: 128}}
    assert survival_oracle(turn) == 128  # B lost half of its prefix while the turn waited; A hit 128
    assert survival_oracle({**turn, "held_at_first_token": {A: 384, B: 256}}) == 256


def test_where_tokens_went_splits_the_loss_after_the_send_by_cause() -> None:
    turn = {
        "id": "p/0/1",
        "direct": False,
        "cached": 128,
        "held": {A: 384, B: 256},
        "held_at_first_token": {A: 384, B: 128},
        "oracle": 384,
        "prompt": 512,
        "lost_cause": "evicted_after_send",
    }
    out = where_tokens_went([turn], {"p/0/1": {"upstream": A, "reason": "prefix_hit"}})
    assert out["after_send_tokens_lost"] == 256
    assert out["after_send_by_cause"] == {"evicted_after_send": {"tokens": 256, "turns": 1}}
    assert (out["oracle_tokens"], out["survival_oracle_tokens"], out["prompt_tokens"]) == (384, 128, 512)
