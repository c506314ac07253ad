"""The simulator's replica has vLLM v1's single KV block pool (pool.py): each test fails if one rule breaks."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pool import BlockPool, PoolReplica

from inferstack_fake_engine.sim import SimParams, SimSequence

BS = 4


def chain(name: str, n: int) -> list[bytes]:
    return [f"{name}{i}".encode() for i in range(n)]


def replica(num_blocks: int) -> PoolReplica:
    return PoolReplica(SimParams(num_blocks=num_blocks, block_size=BS, max_num_seqs=8, max_batched_tokens=64))


def run_until_idle(r: PoolReplica) -> None:
    while r.plan_step() is not None:
        r.finish_step()


def step(r: PoolReplica) -> None:
    assert r.plan_step() is not None
    r.finish_step()


def test_a_running_requests_blocks_are_never_evicted_and_a_request_that_does_not_fit_waits() -> None:
    r = replica(8)
    a = SimSequence(1, 6 * BS, 8, chain("a", 6))  # 6 prompt blocks + 2 for its output: the whole pool
    r.add(a)
    step(r)  # prefill done: a's blocks are hashed, and a keeps decoding
    assert r.held(a.blocks) == 6
    b = SimSequence(2, 3 * BS, 1, chain("b", 3))
    r.add(b)
    for _ in range(6):
        step(r)
        assert r.held(a.blocks) == 6  # nothing of a's may go while it runs
        assert r.waiting[0] is b and r.num_running == 1  # b cannot fit: it queues, it does not evict
    run_until_idle(r)
    assert b.generated == 1 and r.finished_total == 2
    assert r.held(b.blocks) == 3


def test_a_freed_block_is_reused_least_recently_freed_first_and_a_chain_loses_its_tail_first() -> None:
    pool = BlockPool(6)
    a = pool.take(3)
    for b, h in zip(a, chain("a", 3), strict=True):
        pool.set_hash(b, h)
    b_blocks = pool.take(3)
    for b, h in zip(b_blocks, chain("b", 3), strict=True):
        pool.set_hash(b, h)
    pool.release(a)  # a finished first: its blocks are the least recently used
    pool.release(b_blocks)
    pool.events = []
    pool.take(1)
    assert pool.held(chain("a", 3)) == 2 and pool.held(chain("b", 3)) == 3  # a's tail went, not its head
    pool.take(2)
    assert pool.held(chain("a", 3)) == 0 and pool.held(chain("b", 3)) == 3
    pool.take(1)
    assert pool.held(chain("b", 3)) == 2
    assert pool.events == [(False, h) for h in (b"a2", b"a1", b"a0", b"b2")]


def test_a_hit_on_a_free_block_takes_it_back_out_of_the_free_queue() -> None:
    r = replica(10)
    first = SimSequence(1, 5 * BS, 1, chain("p", 5))
    r.add(first)
    run_until_idle(r)
    assert len(r.pool.free) == 10 and r.held(first.blocks) == 5  # freed, still cached
    again = SimSequence(2, 6 * BS, 8, [*chain("p", 5), b"q5"])  # a later turn: the same 5 blocks, then more
    r.add(again)
    assert r.plan_step() is not None
    assert again.cached_tokens == 5 * BS  # the hit is counted at admission
    assert r.prefix_hits_total == 5 * BS and r.prefix_queries_total == 11 * BS
    assert len(r.pool.free) == 10 - 6  # the 5 hit blocks left the free queue, plus one new block
    r.finish_step()
    other = SimSequence(3, 4 * BS, 1, chain("o", 4))  # takes every free block there is
    r.add(other)
    run_until_idle(r)
    assert r.held(first.blocks) == 5  # the hit blocks were in use: other could not evict them


def test_the_last_prompt_token_is_always_computed_and_usage_counts_every_held_block() -> None:
    r = replica(10)
    r.add(SimSequence(1, 4 * BS, 1, chain("x", 4)))
    run_until_idle(r)
    same = SimSequence(2, 4 * BS, 2, chain("x", 4))  # the whole prompt is cached: still one block to compute
    r.add(same)
    assert r.plan_step() is not None
    assert same.cached_tokens == 3 * BS
    assert r.kv_cache_usage == 0.4  # its 4 prompt blocks are taken (3 hits and the recomputed one)
