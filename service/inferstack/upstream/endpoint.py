"""One upstream replica (an "endpoint" in Envoy's words) and what the gateway knows of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EngineLoad:
    """Load an engine reports on its ``/metrics``; ``at`` is the monotonic time of the scrape."""

    running: float
    waiting: float
    kv_cache_usage: float
    at: float


@dataclass(eq=False)
class Endpoint:
    url: str
    models: frozenset[str] = frozenset()
    model_cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    healthy: bool = False
    """Set by the active health check: the last ``GET /health`` and ``GET /v1/models`` succeeded."""
    in_flight: int = 0
    """Requests the gateway has open to this replica: instant and authoritative."""
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    load: EngineLoad | None = None

    def available(self, now: float) -> bool:
        return self.healthy and now >= self.ejected_until

    def fresh_load(self, now: float, max_age: float) -> EngineLoad | None:
        """The scraped load, or None when it is too old to steer traffic."""
        load = self.load
        if load is None or now - load.at > max_age:
            return None
        return load
