"""When to retry an upstream attempt on another replica: back-off, and a budget against retry storms."""

from __future__ import annotations

import random

from ..config import RetryPolicy


def backoff(policy: RetryPolicy, retry: int) -> float:
    """Full-jitter exponential back-off (AWS architecture blog): spreads retries of a burst."""
    ceiling = min(policy.backoff_max, policy.backoff_base * 2 ** (retry - 1))
    return random.uniform(0, ceiling)


class RetryBudget:
    """Envoy's retry budget: retries in flight <= ``budget_percent`` of the active requests.

    When replicas fail because they are overloaded, unbounded retries multiply the load that broke
    them; the budget lets a few requests retry (``min_retry_concurrency`` always) and fails the rest
    fast. One per gateway process, counted on the event loop (no locks).
    """

    __slots__ = ("_min", "_share", "active", "retrying")

    def __init__(self, policy: RetryPolicy) -> None:
        self._share = policy.budget_percent / 100
        self._min = policy.min_retry_concurrency
        self.active = 0
        """Requests being routed (waiting for, or talking to, a replica)."""
        self.retrying = 0
        """Of those, requests on a retry."""

    def allows(self) -> bool:
        return self.retrying < max(self._min, self._share * self.active)
