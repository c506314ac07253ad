"""The cluster's circuit breaker: a slot on a replica with room, or a wait in a bounded queue.

A request waits (is "held") when its model has no ready replica (scale from zero: the autoscaler
reads ``inferstack_model_demand``) or when every replica is at ``max_in_flight_per_replica``. It
is released the moment the cluster changes (a replica becomes ready, or a slot frees) and fails with
503 once ``hold_timeout`` passes; 429 with Retry-After when the queue itself is full.

The router asks for ``room`` (the replicas with a free slot, waiting for one if need be), lets the
scheduler choose among them and ``occupy`` the chosen one, with no await in between; ``release``
frees the slot. The queue knows nothing of scheduling.
"""

from __future__ import annotations

import time

from ..config import Settings
from ..errors import NoUpstreamError, RateLimitError
from ..metrics.gateway import GatewayMetrics
from .cluster import Cluster
from .endpoint import Endpoint


class HoldQueue:
    def __init__(self, settings: Settings, cluster: Cluster, metrics: GatewayMetrics) -> None:
        self._settings = settings
        self._cluster = cluster
        self._metrics = metrics
        self._held: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self._total_held = 0
        for model in settings.models:  # the autoscaler's series exists before the first request
            metrics.demand.labels(model).set(0)

    def demand(self, model: str) -> int:
        return self._held.get(model, 0) + self._in_flight.get(model, 0)

    async def room(self, model: str, exclude: frozenset[str] = frozenset(), wait: bool = True) -> list[Endpoint]:
        """The replicas serving ``model`` with a free slot; ``occupy`` one of them before the next await.

        With ``wait=False`` (a retry) return [] at once when no other replica has room: a retry
        that waits would hold a request the client may already have given up on.
        """
        candidates = self._free(model, exclude)
        if candidates or not wait:
            return candidates
        if self._total_held >= self._settings.max_held_requests:
            self._metrics.rate_limited.labels("all", "queue").inc()
            raise RateLimitError("The gateway's wait queue is full; retry later.", retry_after=1)
        started = time.monotonic()
        self._hold(model, +1)
        try:
            while True:
                # Scale from zero may take minutes (node, image, model load); a full fleet should
                # not keep a client that long: it gets 429 and retries, or another gateway takes it.
                at_capacity = bool(self._cluster.candidates(model))
                limit = self._settings.queue_timeout if at_capacity else self._settings.hold_timeout
                remaining = started + limit - time.monotonic()
                if remaining <= 0:
                    break
                await self._cluster.wait_for_change(remaining)
                candidates = self._free(model, exclude)
                if candidates:
                    return candidates
        finally:
            self._hold(model, -1)
        if self._cluster.candidates(model):
            raise RateLimitError(
                f"Every replica serving '{model}' is at capacity; retry later.",
                retry_after=self._settings.queue_timeout or 1,
            )
        raise NoUpstreamError(f"No healthy replica serves model '{model}'.")

    def occupy(self, model: str, endpoint: Endpoint) -> None:
        endpoint.in_flight += 1
        self._count(model, +1)

    def release(self, model: str, endpoint: Endpoint) -> None:
        endpoint.in_flight -= 1
        self._count(model, -1)
        self._cluster.notify_capacity()

    def _free(self, model: str, exclude: frozenset[str]) -> list[Endpoint]:
        cap = self._settings.max_in_flight_per_replica
        return [e for e in self._cluster.candidates(model) if e.url not in exclude and e.in_flight < cap]

    def _count(self, model: str, delta: int) -> None:
        self._in_flight[model] = self._in_flight.get(model, 0) + delta
        self._metrics.child(self._metrics.in_flight, model).inc(delta)
        self._metrics.demand.labels(model).set(self.demand(model))

    def _hold(self, model: str, delta: int) -> None:
        self._held[model] = self._held.get(model, 0) + delta
        self._total_held += delta
        self._metrics.held.labels(model).set(self._held[model])
        self._metrics.demand.labels(model).set(self.demand(model))
