"""The tenancy filters' metrics (names and labels: docs/metrics.md).

Defined here, on the registry the app passes in. ``inferstack_rate_limited_total`` belongs to the
gateway's metrics (its hold queue rejects too): pass that counter in, or a private one is made for
standalone use. Token counters stay with the relay, which sees the upstream's usage.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..metrics.gateway import Tally
from .auth import ANONYMOUS

OTHER = "other"


class TenancyMetrics:
    def __init__(self, registry: CollectorRegistry, rate_limited: Counter | None = None) -> None:
        self.rate_limited = (
            rate_limited
            if rate_limited is not None
            else Counter(
                "inferstack_rate_limited",
                "Requests rejected with 429, by limit.",
                ["tenant", "limit"],
                registry=registry,
            )
        )
        self.cost = Counter(
            "inferstack_cost_usd", "Spend in USD from the price table.", ["tenant", "model"], registry=registry
        )
        self.budget_used = Gauge(
            "inferstack_tenant_budget_used_ratio",
            "Spend this month / monthly budget.",
            ["tenant"],
            registry=registry,
        )
        self.cache_requests = Counter(
            "inferstack_cache_requests", "Response-cache lookups.", ["result"], registry=registry
        )
        self.cache_bytes = Gauge("inferstack_cache_bytes", "Bytes held by the response cache.", registry=registry)
        self.cache_evictions = Counter(
            "inferstack_cache_evictions", "Entries evicted from the response cache.", registry=registry
        )
        # labels() locks and builds a tuple per call: cache the children used on every request.
        self._cache_results = {r: Tally(self.cache_requests.labels(r)) for r in ("hit", "miss", "bypass")}
        self._labels: frozenset[str] = frozenset({ANONYMOUS})

    def set_tenants(self, tenants: frozenset[str], limit: int) -> None:
        """Tenants allowed as label values: the first ``limit`` configured ones (sorted), others -> other."""
        self._labels = frozenset(sorted(tenants)[:limit]) | {ANONYMOUS}

    def tenant_label(self, tenant: str) -> str:
        return tenant if tenant in self._labels else OTHER

    def cache_result(self, result: str) -> None:
        self._cache_results[result].inc()
