"""The retry budget (Envoy's): retries in flight stay under a share of active requests, with a floor;
back-off is full jitter under base x 2**(retry-1), capped."""

from __future__ import annotations

import random

from inferstack.config import RetryPolicy
from inferstack.router.retry import RetryBudget, backoff


def test_the_budget_is_a_share_of_active_requests_with_a_minimum() -> None:
    budget = RetryBudget(RetryPolicy(budget_percent=20, min_retry_concurrency=3))
    budget.active = 100
    budget.retrying = 19
    assert budget.allows()
    budget.retrying = 20
    assert not budget.allows()
    budget.active, budget.retrying = 4, 2
    assert budget.allows()  # 20% of 4 is under the floor of 3
    budget.retrying = 3
    assert not budget.allows()


def test_backoff_is_full_jitter_under_a_doubling_cap() -> None:
    random.seed(7)
    policy = RetryPolicy(backoff_base=0.1, backoff_max=10.0)
    for retry, ceiling in ((1, 0.1), (2, 0.2), (4, 0.8), (8, 10.0)):
        waits = [backoff(policy, retry) for _ in range(2000)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > 0.95 * ceiling and min(waits) < 0.05 * ceiling  # the whole range is used


def test_at_a_budget_of_100_percent_every_active_request_may_retry() -> None:
    budget = RetryBudget(RetryPolicy(budget_percent=100, min_retry_concurrency=0))
    budget.active, budget.retrying = 101, 100
    assert budget.allows()  # the 101st retry of 101 requests: exactly the share, not a rounding of it
    budget.retrying = 101
    assert not budget.allows()
