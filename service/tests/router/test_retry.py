"""The retry budget (Envoy's): retries in flight stay under a share of active requests, with a floor."""

from __future__ import annotations

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


def test_backoff_is_jittered_under_an_exponential_cap() -> None:
    policy = RetryPolicy(backoff_base=0.1, backoff_max=0.3)
    assert all(0 <= backoff(policy, 1) <= 0.1 for _ in range(50))
    assert all(0 <= backoff(policy, 5) <= 0.3 for _ in range(50))
