"""When and how long to wait before retrying an upstream attempt on another replica."""

from __future__ import annotations

import random

from ..config import RetryPolicy


def backoff(policy: RetryPolicy, retry: int) -> float:
    """Full-jitter exponential back-off (AWS architecture blog): spreads retries of a burst."""
    ceiling = min(policy.backoff_max, policy.backoff_base * 2 ** (retry - 1))
    return random.uniform(0, ceiling)
