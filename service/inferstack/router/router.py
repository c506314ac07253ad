"""Route a request and retry it: choose a replica, attempt, retry elsewhere before the first byte.

Per request, for a profile that reads token ids (``precise_prefix``): the prompt's token ids from an
engine's ``/tokenize`` (``kvcache.service``), handed to the scheduler, which does no I/O itself.
Per try: a slot on a replica with room (``upstream.hold``), chosen by the scheduler; one attempt
(``upstream.client``) with its timeout (a stream's first byte, or a non-stream request's whole
response), within the request's total deadline; then the relay. A failure before anything reached
the client is retried on another replica when it is safe (``AttemptError.retryable``), within the
retry policy, the retry budget and the deadline; after that there is no retry.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from ..clock import monotonic
from ..config import Settings
from ..exchange import Exchange, Responder
from ..kvcache.service import KVRouting
from ..metrics.gateway import GatewayMetrics
from ..relay.relay import relay_stream, relay_whole
from ..scheduling import Route, Scheduler
from ..upstream.adapter_loader import AdapterLoader
from ..upstream.client import Pool, attempt
from ..upstream.cluster import Cluster
from ..upstream.endpoint import Endpoint
from ..upstream.failures import AttemptError
from ..upstream.hold import HoldQueue
from .retry import RetryBudget, backoff

log = logging.getLogger("inferstack.router")


class Router:
    def __init__(
        self,
        settings: Settings,
        pool: Pool,
        cluster: Cluster,
        holds: HoldQueue,
        scheduler: Scheduler,
        metrics: GatewayMetrics,
        kv: KVRouting | None = None,
        adapters: AdapterLoader | None = None,
    ) -> None:
        self._kv = kv
        self._adapters = adapters
        self._settings = settings
        self._pool = pool
        self._cluster = cluster
        self._holds = holds
        self._scheduler = scheduler
        self._metrics = metrics
        self._budget = RetryBudget(settings.retry)

    def _may_override(self, ex: Exchange) -> bool:
        """May this request choose its scheduling profile? Every request where the gateway allows it,
        else only one whose key carries the grant (``routing_override`` in the key file)."""
        if self._settings.routing.allow_override:
            return True
        principal = ex.admission.principal if ex.admission is not None else None
        return principal is not None and principal.entry is not None and principal.entry.routing_override

    async def forward(self, path: str, payload: dict[str, Any], ex: Exchange, out: Responder) -> None:
        """Answer ``ex`` from a replica; raises the last attempt's GatewayError when none answered."""
        _ask_for_usage(payload, ex)
        route = ex.route = self._scheduler.route(
            ex.model, payload, ex.endpoint, ex.request_headers, may_override=self._may_override(ex)
        )
        if self._kv is not None and self._scheduler.wants_tokens(route):
            engines = [e.url for e in self._cluster.candidates(ex.model)]
            tokens = await self._kv.token_ids(ex.model, payload, ex.endpoint, engines)
            self._scheduler.give_tokens(route, tokens, payload)
        ex.deadline = monotonic() + self._settings.timeouts.total
        budget = self._budget
        budget.active += 1
        retrying = False
        try:
            exclude: frozenset[str] = frozenset()
            failure: AttemptError | None = None
            endpoint = await self._take(ex.model, route, exclude, wait=True)
            while endpoint is not None:
                ex.upstream, ex.attempts = endpoint.url, ex.attempts + 1
                try:
                    failure = await self._try(endpoint, path, ex, out)
                finally:
                    self._holds.release(ex.model, endpoint)
                if failure is None:
                    self._cluster.record_success(endpoint)
                    return
                if failure.replica_fault:
                    self._cluster.record_failure(endpoint, ex.model)
                if out.started:
                    return  # the stream broke after it started: its error event is sent; no retry
                # Nothing has reached the client: another replica, if safe and within policy, deadline, budget.
                exclude = exclude | {endpoint.url}
                wait = backoff(self._settings.retry, ex.attempts)
                if (
                    not failure.retryable
                    or ex.attempts > self._settings.retry.max_retries
                    or monotonic() + wait >= ex.deadline
                ):
                    raise failure.error
                if not retrying:
                    if not budget.allows():
                        self._metrics.retry_budget_exhausted.labels(ex.model).inc()
                        raise failure.error
                    retrying = True
                    budget.retrying += 1
                await asyncio.sleep(wait)
                endpoint = await self._take(ex.model, route, exclude, wait=False)
                if endpoint is not None:
                    self._metrics.retries.labels(ex.model).inc()
            assert failure is not None  # the first _take waits for a replica or raises
            raise failure.error
        finally:
            budget.active -= 1
            if retrying:
                budget.retrying -= 1

    async def _take(self, model: str, route: Route, exclude: frozenset[str], wait: bool) -> Endpoint | None:
        candidates = await self._holds.room(model, exclude, wait=wait)
        if not candidates:
            return None
        endpoint = self._scheduler.pick(route, candidates)
        self._holds.occupy(model, endpoint)
        return endpoint

    async def _try(self, endpoint: Endpoint, path: str, ex: Exchange, out: Responder) -> AttemptError | None:
        """One attempt and its relay; the failure, if any (counted), else None."""
        timeouts = self._settings.timeouts
        loop = asyncio.get_running_loop()
        limit = timeouts.first_byte if ex.stream else timeouts.response
        failure: AttemptError | None = None
        # A LoRA adapter the replica lacks is loaded there first (base models skip the await).
        adapters = self._adapters if self._adapters is not None and self._adapters.handles(ex.model) else None
        if adapters is not None:
            failure = await adapters.prepare(endpoint, ex.model, ex.deadline)
        if failure is None:
            try:
                by = loop.time() + min(limit, ex.deadline - monotonic())
                failure = await self._send(endpoint, path, ex, out, by)
            finally:
                if adapters is not None:
                    adapters.done(endpoint, ex.model)
        if failure is not None:
            self._metrics.upstream_errors.labels(ex.model, failure.kind).inc()
            if not out.started:
                log.warning(
                    "upstream attempt failed",
                    extra={"request_id": ex.request_id, "upstream": endpoint.url, "kind": failure.kind},
                )
        return failure

    async def _send(
        self, endpoint: Endpoint, path: str, ex: Exchange, out: Responder, by: float
    ) -> AttemptError | None:
        """The attempt (its first byte or whole answer by loop time ``by``) and its relay."""
        timeouts = self._settings.timeouts
        try:
            reply = await attempt(self._pool, endpoint, path, ex, by, max_bytes=self._settings.responses.max_bytes)
        except AttemptError as err:
            return err
        try:
            if reply.streaming:
                return await relay_stream(reply, ex, out, self._metrics, timeouts.idle, timeouts.client_write)
            await relay_whole(reply, ex, out, self._metrics)
            return None
        finally:
            reply.close()


def _ask_for_usage(payload: dict[str, Any], ex: Exchange) -> None:
    """Streams: ask for the usage chunk to count tokens without a tokenizer; the relay strips it if unasked."""
    if not ex.stream:
        return
    options = payload.get("stream_options")
    ex.wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    if not ex.wants_usage:
        payload["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        ex.body = orjson.dumps(payload)
