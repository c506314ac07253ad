"""The replica model: queueing, prefill cost of uncached tokens, the LRU prefix cache, batch-dependent ITL."""

from __future__ import annotations

import pytest

from inferstack_fake_engine.sim import PrefixCache, ReplicaModel, SimParams, SimSequence, block_hashes

P = SimParams(
    max_num_seqs=2,
    max_batched_tokens=64,
    block_size=4,
    num_blocks=1000,
    cache_blocks=8,
    step_base=0.01,
    decode_per_seq=0.001,
    prefill_per_token=0.0001,
)


def run(model: ReplicaModel) -> tuple[float, dict[int, list[float]]]:
    """Step until idle; return the elapsed time and each sequence's token times."""
    now, times = 0.0, {}
    while (duration := model.plan_step()) is not None:
        now += duration
        for e in model.finish_step():
            times.setdefault(e.seq_id, []).append(now)
    return now, times


def chain(text: str) -> list[bytes]:
    return block_hashes("m", text, P.block_size)


def test_block_hashes_chain_prefixes_and_include_the_model() -> None:
    a, b = chain("x" * 64 + "tail-one" * 8), chain("x" * 64 + "tail-two" * 8)
    assert len(a) == len(b) == 4 + 4  # 16 chars per block
    assert a[:4] == b[:4] and a[4:] != b[4:]
    assert block_hashes("other", "x" * 64, 4) != a[:4]
    assert len(chain("x" * 15)) == 0  # partial blocks are never hashed


def test_cache_is_lru_and_bounded_and_evicts_tails_first() -> None:
    cache = PrefixCache(capacity=4)
    first, second = chain("a" * 48), chain("b" * 32)  # 3 blocks, 2 blocks
    cache.insert(first)
    assert cache.match(first) == 3
    cache.insert(second)
    assert len(cache) == 4 and cache.evictions == 1
    assert cache.match(first) == 2  # lost its tail block, not its head
    assert cache.match(second) == 2


def test_held_looks_without_touching_the_lru() -> None:
    # The routing bench's oracle looks at every replica's cache; a look must not change what is evicted.
    cache = PrefixCache(capacity=4)
    first, second = chain("a" * 32), chain("b" * 32)
    cache.insert(first)
    cache.insert(second)
    assert cache.held(first) == 2
    cache.insert(chain("c" * 32))  # evicts the least recently used: first, as if never looked at
    assert cache.held(first) == 0 and cache.held(second) == 2


def test_prefill_costs_only_uncached_tokens() -> None:
    model = ReplicaModel(P)
    prompt = "p" * 4 * 60  # 60 tokens, 15 blocks (cache holds 8)
    model.add(SimSequence(1, 60, 1, chain(prompt)))
    cold, _ = run(model)
    model.add(SimSequence(2, 60, 1, chain(prompt)))
    warm, _ = run(model)
    assert cold == pytest.approx(0.01 + 60 * 0.0001)
    assert warm == pytest.approx(0.01 + (60 - 32) * 0.0001)  # 8 cached blocks of 4 tokens
    assert model.prefix_queries_total == 120 and model.prefix_hits_total == 32
    assert model.prompt_tokens_total == 120


def test_chunked_prefill_spreads_a_long_prompt_over_steps() -> None:
    model = ReplicaModel(P)
    model.add(SimSequence(1, 200, 1, []))
    _, times = run(model)
    assert times[1] == [pytest.approx(4 * 0.01 + 200 * 0.0001)]  # 64 + 64 + 64 + 8 tokens


def test_queue_beyond_max_num_seqs() -> None:
    model = ReplicaModel(P)
    for i in range(3):
        model.add(SimSequence(i, 4, 3, []))
    model.plan_step()
    assert (model.num_running, model.num_waiting) == (2, 1)
    _, times = run(model)
    assert times[2][0] > times[0][-1]  # the third starts when a slot frees


def test_inter_token_latency_grows_with_batch() -> None:
    def itl(batch: int) -> float:
        model = ReplicaModel(SimParams(max_num_seqs=batch, step_base=0.01, decode_per_seq=0.002))
        for i in range(batch):
            model.add(SimSequence(i, 4, 5, []))
        _, times = run(model)
        return times[0][2] - times[0][1]

    assert itl(1) == pytest.approx(0.012)
    assert itl(8) == pytest.approx(0.026)


def test_kv_reservation_limits_admission_and_abort_frees_it() -> None:
    model = ReplicaModel(SimParams(max_num_seqs=8, block_size=4, num_blocks=10, max_batched_tokens=64))
    model.add(SimSequence(1, 20, 20, []))  # reserves 10 blocks
    model.add(SimSequence(2, 4, 4, []))
    model.plan_step()
    assert (model.num_running, model.num_waiting) == (1, 1)
    model.abort(1)
    model.plan_step()
    assert (model.num_running, model.num_waiting) == (1, 0)
    with pytest.raises(ValueError):
        model.add(SimSequence(3, 40, 10, []))


def test_block_hashes_can_extend_a_known_prefix_chain() -> None:
    text = "abc" * 300
    assert block_hashes("m", text, 4, known=chain(text[:200])) == chain(text)
