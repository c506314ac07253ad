"""Token estimates, the price table and the usage ledger (memory and Redis)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from inferstack.filters.ledger import Ledger, MemoryLedger, RedisLedger, Usage
from inferstack.filters.prices import NANO, parse_prices
from inferstack.filters.tokens import estimate_prompt_tokens, reserved_tokens


def test_reservation_is_prompt_estimate_plus_max_tokens_times_n() -> None:
    chat = {"messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 10, "n": 2}
    assert estimate_prompt_tokens("chat", chat) == 4 + 10
    assert reserved_tokens("chat", chat, default_max_tokens=512) == 14 + 20
    assert reserved_tokens("completions", {"prompt": [1, 2, 3]}, default_max_tokens=5) == 3 + 5
    assert reserved_tokens("embeddings", {"input": ["abcd", "abcdefgh"]}, default_max_tokens=5) == 3


def test_prices_given_and_derived_from_gpu_cost() -> None:
    table = parse_prices("""
models:
  small: {prompt_per_1m: 0.5, completion_per_1m: 1.5}
  big: {gpu_hour_usd: 3.6, gpus: 2, prompt_tokens_per_second: 2000, completion_tokens_per_second: 200}
default: {prompt_per_1m: 1, completion_per_1m: 1}
""")
    assert table.cost_nano("small", 1_000_000, 1_000_000) == 2 * NANO
    # 2 GPUs x 3.6 USD/h = 0.002 USD/s; / 200 tok/s = 10 USD per 1M completion tokens.
    assert table.usd_per_1m("big") == pytest.approx((1.0, 10.0))
    assert table.cost_nano("unlisted", 1000, 0) == 1000 * NANO // 1_000_000
    with pytest.raises(ValueError, match="either"):
        parse_prices("models: {x: {prompt_per_1m: 1}}")


@pytest.fixture(params=["memory", "redis"])
def ledger(request: pytest.FixtureRequest, redis_client: Any) -> Ledger:
    return MemoryLedger() if request.param == "memory" else RedisLedger(redis_client)


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


async def test_ledger_sums_per_tenant_and_model_over_a_range(ledger: Ledger) -> None:
    await ledger.record("acme", "m1", Usage(1, 0, 10, 5, 300), ts(2025, 3, 31, 23, 30))
    await ledger.record("acme", "m1", Usage(1, 1, 0, 0, 0), ts(2025, 4, 1, 0, 10))
    spend = await ledger.record("acme", "m2", Usage(1, 0, 1, 1, 700), ts(2025, 4, 1, 1, 0))
    await ledger.record("beta", "m1", Usage(1, 0, 2, 2, 50), ts(2025, 4, 2))
    assert spend == 700  # a new month starts from zero
    assert await ledger.month_spend("acme", ts(2025, 3, 15)) == 300
    rows = await ledger.report(ts(2025, 4, 1), ts(2025, 4, 2))
    assert rows == [
        {
            "tenant": "acme",
            "model": "m1",
            "requests": 1,
            "cached_requests": 1,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost_usd": 0.0,
        },
        {
            "tenant": "acme",
            "model": "m2",
            "requests": 1,
            "cached_requests": 0,
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "cost_usd": 700 / NANO,
        },
    ]
    with pytest.raises(ValueError):
        await ledger.report(ts(2020, 1, 1), ts(2025, 1, 1))
