"""``HistogramBatch``, ``observe`` and ``Tally`` add to a metric exactly what prometheus_client's
``observe`` and ``inc`` would."""

import pytest
from prometheus_client import generate_latest

from inferstack.metrics.gateway import ITL_BUCKETS, GatewayMetrics, HistogramBatch, Tally, observe

# Bucket edges, values between them, zero, beyond the last bucket, and repeats.
VALUES = [0.0, 0.001, 0.0011, *ITL_BUCKETS, 0.0249, 0.5, 3.0, 100.0, 0.0, 0.01]


def exposition(metrics: GatewayMetrics, name: str = "inferstack_inter_token") -> list[str]:
    text = generate_latest(metrics.registry).decode()
    return [line for line in text.splitlines() if line.startswith(name) and "_created" not in line]


def test_a_batch_exposes_what_one_observe_per_value_exposes() -> None:
    one, batched = GatewayMetrics(), GatewayMetrics()
    for value in VALUES:
        one.itl.labels("m", "chat").observe(value)
    batch = HistogramBatch(batched.itl.labels("m", "chat"))
    for value in VALUES:
        batch.observe(value)
    assert exposition(batched) != exposition(one)  # nothing is added before the flush
    batch.flush()
    batch.flush()  # a second flush adds nothing
    assert exposition(batched) == exposition(one)


def test_repeated_values_and_the_periodic_flush() -> None:
    one, batched = GatewayMetrics(), GatewayMetrics()
    child = one.itl.labels("m", "chat")
    for _ in range(HistogramBatch.FLUSH_EVERY + 3):
        child.observe(0.0)
    batch = HistogramBatch(batched.itl.labels("m", "chat"))
    batch.observe(0.0, HistogramBatch.FLUSH_EVERY + 3)  # past FLUSH_EVERY: added at once
    assert exposition(batched) == exposition(one)


def test_observe_all_exposes_what_one_observe_per_value_exposes_and_flushes_as_it_does() -> None:
    one, batched = GatewayMetrics(), GatewayMetrics()
    for value in VALUES:
        one.itl.labels("m", "chat").observe(value)
    batch = HistogramBatch(batched.itl.labels("m", "chat"))
    batch.observe_all(VALUES[:3])
    batch.observe_all(VALUES[3:])
    assert exposition(batched) != exposition(one)  # nothing is added before the flush
    batch.flush()
    assert exposition(batched) == exposition(one)
    # Past FLUSH_EVERY pending observations: added at once (values exact in binary: the sums agree).
    many = [0.25] * (HistogramBatch.FLUSH_EVERY - 1)
    for value in [*many, 0.5]:
        one.itl.labels("m", "chat").observe(value)
    batch.observe_all(many)
    assert exposition(batched) != exposition(one)
    batch.observe_all([0.5])
    assert exposition(batched) == exposition(one)


def test_observe_exposes_what_the_histograms_observe_exposes() -> None:
    one, fast = GatewayMetrics(), GatewayMetrics()
    for value in VALUES:
        one.itl.labels("m", "chat").observe(value)
        observe(fast.itl.labels("m", "chat"), value)
    assert exposition(fast) == exposition(one)


def test_a_tally_counts_what_the_counters_inc_counts() -> None:
    one, fast = GatewayMetrics(), GatewayMetrics()
    tally = Tally(fast.prompt_tokens.labels("m", "t"))
    for amount in (1, 0, 7, 2.5):
        one.prompt_tokens.labels("m", "t").inc(amount)
        tally.inc(amount)
    assert fast.tally(fast.prompt_tokens, "m", "t") is fast.tally(fast.prompt_tokens, "m", "t")
    assert exposition(fast, "inferstack_prompt_tokens") == exposition(one, "inferstack_prompt_tokens")
    with pytest.raises(ValueError, match="non-negative"):
        tally.inc(-1)
    with pytest.raises(AttributeError):
        Tally(fast.prompt_tokens)  # a parent has no value of its own
