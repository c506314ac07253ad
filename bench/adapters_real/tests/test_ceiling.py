"""The offline ceiling of the adapter bench: the dynamic programme is exact, and the bounds are ordered."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the bench imports its siblings by name

import ceiling

NAMES = ["a", "b", "c", "d"]


def brute_force(sequence: list[str], slots: int, balance: float) -> int:
    """Every assignment of every request to one of two LRU replicas."""
    best = None
    for choice in itertools.product((0, 1), repeat=len(sequence)):
        first = sum(choice)
        if max(first, len(sequence) - first) > balance * len(sequence) / 2:
            continue
        parts = ([x for x, c in zip(sequence, choice, strict=True) if c == r] for r in (0, 1))
        loads = sum(ceiling.lru_loads(part, slots) for part in parts)
        best = loads if best is None else min(best, loads)
    assert best is not None
    return best


def test_the_dynamic_programme_is_the_best_assignment() -> None:
    for seed in (1, 2, 3):
        sequence = ceiling.zipf_sequence(NAMES, 12, 0.8, seed)
        assert ceiling.best_dynamic(sequence, NAMES, 1, any_eviction=False, balance=1.34) == brute_force(
            sequence, 1, 1.34
        )


def test_bounds_are_ordered_and_the_gateway_is_simulated() -> None:
    names = [f"n{i}" for i in range(6)]
    sequence = ceiling.zipf_sequence(names, 120, 1.0, 1)
    found = ceiling.bounds(sequence, names, 2, 2)
    dynamic, any_eviction = found["best_dynamic_lru"], found["best_dynamic_any_eviction"]
    assert found["belady_all_slots"] <= any_eviction <= dynamic <= found["best_static_split_lru"]["loads"]
    assert dynamic <= found["best_online_known_popularity"]["loads"] <= found["round_robin_lru"]
    assert found["best_online_known_popularity"]["max_over_mean"] <= 1.25
    simulated = ceiling.simulate_gateway(sequence, names, 2, 4, 2.0, 1.2)
    assert dynamic <= simulated["loads"] < found["round_robin_lru"]


def test_a_mix_draws_each_adapter_by_its_weight_and_a_bad_mix_is_refused() -> None:
    weights = ceiling.parse_mix("32:16:8:4:2:1", 6)
    names = [f"n{i}" for i in range(6)]
    sequence = ceiling.weighted_sequence(names, 6300, weights, 1)
    counts = [sequence.count(n) for n in names]
    assert counts == sorted(counts, reverse=True) and 0.45 < counts[0] / len(sequence) < 0.57  # 32/63 = 0.51
    # The Zipf sequence is the weighted one with 1 / i**s: the same draws for the same seed.
    assert ceiling.zipf_sequence(names, 50, 1.0, 3) == ceiling.weighted_sequence(
        names, 50, [1 / (i + 1) for i in range(6)], 3
    )
    for bad in ("32:16:8", "1:1:1:1:1:0"):
        with pytest.raises(ValueError, match="--mix"):
            ceiling.parse_mix(bad, 6)
