"""Passive health checking: eject a replica after consecutive failures, for longer each time.

As in Envoy's outlier detection: the n-th ejection lasts ``base * 2**(n-1)`` (capped), and never more
than ``max_ejected_percent`` of a model's replicas are out at once, so a fleet-wide problem (say, a
bad request pattern) cannot eject everything. The active health check re-admits a replica once its
ejection has expired and it answers again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..config import OutlierDetection
from .endpoint import Endpoint


class OutlierDetector:
    def __init__(self, settings: OutlierDetection, on_eject: Callable[[Endpoint], None]) -> None:
        self._settings = settings
        self._on_eject = on_eject

    def success(self, endpoint: Endpoint) -> None:
        endpoint.consecutive_failures = 0

    def failure(self, endpoint: Endpoint, peers: Iterable[Endpoint], now: float) -> bool:
        """Count a failed attempt; return True when it ejects the replica."""
        endpoint.consecutive_failures += 1
        s = self._settings
        if endpoint.consecutive_failures < s.consecutive_failures or now < endpoint.ejected_until:
            return False
        peers = list(peers)
        ejected = sum(1 for p in peers if p is not endpoint and now < p.ejected_until)
        # As Envoy does, one replica may always be ejected, whatever the percentage.
        if ejected and (ejected + 1) * 100 > s.max_ejected_percent * len(peers):
            return False
        endpoint.ejections += 1
        endpoint.ejected_until = now + min(s.max_ejection, s.base_ejection * 2 ** (endpoint.ejections - 1))
        endpoint.consecutive_failures = 0
        self._on_eject(endpoint)
        return True
