"""``HistogramBatch`` adds to a histogram exactly what ``observe`` one value at a time would."""

from prometheus_client import generate_latest

from inferstack.metrics.gateway import ITL_BUCKETS, GatewayMetrics, HistogramBatch

# Bucket edges, values between them, zero, beyond the last bucket, and repeats.
VALUES = [0.0, 0.001, 0.0011, *ITL_BUCKETS, 0.0249, 0.5, 3.0, 100.0, 0.0, 0.01]


def exposition(metrics: GatewayMetrics) -> list[str]:
    text = generate_latest(metrics.registry).decode()
    return [line for line in text.splitlines() if line.startswith("inferstack_inter_token") and "_created" not in line]


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
