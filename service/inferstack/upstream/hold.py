"""The cluster's circuit breaker: a slot on a replica with room, or a wait in a bounded FIFO queue.

A request waits (is "held") when its model has no ready replica (scale from zero: the autoscaler
reads ``inferstack_model_demand``) or when every replica is at ``max_in_flight_per_replica``. It
fails with 503 once ``hold_timeout`` passes (429 after ``queue_timeout`` while replicas exist but
are full), and with 429 and Retry-After at once when the queue itself is full.

The queue is FIFO per model: only its head takes a slot, and a new request queues behind waiting
ones. A freed slot wakes one waiter (the head); a cluster change (a replica became ready) wakes all,
and a head that took a slot wakes the next while slots remain.

The router asks for ``room`` (the replicas with a free slot, waiting for one if need be), lets the
scheduler choose among them and ``occupy`` the chosen one, with no await in between; ``release``
frees the slot. The queue knows nothing of scheduling.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ..clock import monotonic
from ..config import Settings
from ..errors import NoUpstreamError, RateLimitError
from ..metrics.gateway import GatewayMetrics
from .cluster import Cluster
from .endpoint import Endpoint


class _Waiter:
    __slots__ = ("woken",)

    def __init__(self) -> None:
        self.woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class HoldQueue:
    def __init__(self, settings: Settings, cluster: Cluster, metrics: GatewayMetrics) -> None:
        self._settings = settings
        self._cluster = cluster
        self._metrics = metrics
        self._queues: dict[str, deque[_Waiter]] = {}
        self._in_flight: dict[str, int] = {}
        self._total_held = 0
        self._watched: set[str] = set()
        for model in settings.models:  # the autoscaler's series exists before the first request
            self._watch(model)

    def demand(self, model: str) -> int:
        return len(self._queues.get(model, ())) + self._in_flight.get(model, 0)

    async def room(self, model: str, exclude: frozenset[str] = frozenset(), wait: bool = True) -> list[Endpoint]:
        """The replicas serving ``model`` with a free slot; ``occupy`` one of them before the next await.

        With ``wait=False`` (a retry) return [] at once when no other replica has room: a retry
        that waits would hold a request the client may already have given up on.
        """
        queue = self._queues.get(model)
        if not queue:
            candidates = self._free(model, exclude)
            if candidates or not wait:
                return candidates
        elif not wait:
            return []  # a retry does not jump the queue
        if self._total_held >= self._settings.max_held_requests:
            self._metrics.rate_limited.labels("all", "queue").inc()
            raise RateLimitError("The gateway's wait queue is full; retry later.", retry_after=1)
        queue = self._queues.setdefault(model, deque())
        waiter = _Waiter()
        queue.append(waiter)
        self._hold(model, +1)
        if queue[0] is not waiter and self._free(model, exclude):
            self._wake(model)
        started = monotonic()
        taken: list[Endpoint] = []
        try:
            while True:
                if queue[0] is waiter:
                    taken = self._free(model, exclude)
                    if taken:
                        return taken
                # Scale from zero may take minutes (node, image, model load); a full fleet should
                # not keep a client that long: it gets 429 and retries, or another gateway takes it.
                at_capacity = bool(self._cluster.candidates(model))
                limit = self._settings.queue_timeout if at_capacity else self._settings.hold_timeout
                remaining = started + limit - monotonic()
                if remaining <= 0:
                    break
                if waiter.woken.done():
                    waiter.woken = asyncio.get_running_loop().create_future()
                await asyncio.wait(
                    (waiter.woken, self._cluster.changed()), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            was_head = queue[0] is waiter
            queue.remove(waiter)
            if not queue:
                del self._queues[model]
            self._hold(model, -1)
            # Pass the turn on: to the next waiter while slots remain after ours, or if we gave up ours.
            if queue and was_head and (self._free_slots(taken) > 1 or not taken):
                self._wake(model)
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
        # One slot freed: one waiter woken, of this model first, else of another the replica serves.
        if self._queues and not self._wake(model):
            for other in self._cluster.served(endpoint):
                if self._wake(other):
                    break

    def _wake(self, model: str) -> bool:
        queue = self._queues.get(model)
        if not queue:
            return False
        head = queue[0].woken
        if not head.done():
            head.set_result(None)
        return True

    def _free(self, model: str, exclude: frozenset[str]) -> list[Endpoint]:
        cap = self._settings.max_in_flight_per_replica
        return [e for e in self._cluster.candidates(model) if e.url not in exclude and e.in_flight < cap]

    def _free_slots(self, endpoints: list[Endpoint]) -> int:
        cap = self._settings.max_in_flight_per_replica
        return sum(cap - e.in_flight for e in endpoints)

    def _count(self, model: str, delta: int) -> None:
        self._in_flight[model] = self._in_flight.get(model, 0) + delta
        if model not in self._watched:
            self._watch(model)

    def _hold(self, model: str, delta: int) -> None:
        self._total_held += delta
        if model not in self._watched:
            self._watch(model)

    def _watch(self, model: str) -> None:
        """The model's in-flight, held and demand gauges, read from the queue when scraped: no
        metric is touched per request (four gauge updates, each under a lock, were)."""
        self._watched.add(model)
        m = self._metrics
        m.in_flight.labels(model).set_function(lambda: self._in_flight.get(model, 0))
        m.held.labels(model).set_function(lambda: len(self._queues.get(model, ())))
        m.demand.labels(model).set_function(lambda: self.demand(model))
