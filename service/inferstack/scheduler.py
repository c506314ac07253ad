"""Choosing a replica for a request: the bridge between the request path and the routing policies.

Temporary minimal version: least in-flight, round robin among ties.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from .config import Settings
from .metrics.gateway import GatewayMetrics
from .router.hold import Picker
from .upstream.endpoint import Endpoint


class Scheduler:
    def __init__(self, settings: Settings, metrics: GatewayMetrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._counter = itertools.count()

    def picker(self, model: str, payload: dict[str, Any], kind: str) -> Picker:
        def pick(candidates: Sequence[Endpoint]) -> Endpoint:
            least = min(e.in_flight for e in candidates)
            ties = [e for e in candidates if e.in_flight == least]
            return ties[next(self._counter) % len(ties)]

        return pick

    def finished(self, model: str, endpoint: Endpoint) -> None:
        return None
