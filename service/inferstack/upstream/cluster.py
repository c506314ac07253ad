"""The cluster of upstream replicas: membership (from discovery), health, and outlier detection.

Discovery sets the membership; the health checker flips ``healthy`` and learns each replica's models;
the hold queue asks for candidates and waits on changes; the router reports each attempt's outcome.
Everything runs on the event loop: no locks, no threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp
import orjson

from ..bounds import MODELS_BYTES, UNLISTED_MODELS, TooLarge, read_bounded
from ..clock import monotonic
from ..config import Settings
from ..metrics.gateway import GatewayMetrics
from ..tasks import stop
from .adapters import AdapterPlacement
from .endpoint import Endpoint
from .outlier import OutlierDetector

log = logging.getLogger("inferstack.upstream")


class Cluster:
    def __init__(self, settings: Settings, session: aiohttp.ClientSession, metrics: GatewayMetrics) -> None:
        self._settings = settings
        self._session = session
        self._metrics = metrics
        self.endpoints: dict[str, Endpoint] = {}
        self.known_models: set[str] = set(settings.models)
        """Declared models, those a replica lists, and the last ``UNLISTED_MODELS`` no replica lists any
        more: requests for them wait (scale from zero) instead of getting 404."""
        self._declared: set[str] = set(settings.models)
        self._unlisted: dict[str, None] = {}
        """Known names no replica lists now (not declared), the longest unlisted first."""
        self.adapter_bases: dict[str, str] = {}
        """Adapters the gateway loads on demand (served name -> base model): any replica of the base
        serves them, listed or not (set by the app from the catalog)."""
        self.placement: AdapterPlacement | None = None
        """Told each replica's adapters (its /v1/models cards) and when a replica leaves."""
        self.outliers = OutlierDetector(settings.outlier, self._ejected)
        self._changed: asyncio.Future[None] | None = None
        self._checkers: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    # -- membership -------------------------------------------------------------------------------
    def set_urls(self, urls: Iterable[str]) -> None:
        """Discovery's callback: the full set of replica base URLs. Removed replicas stop at once."""
        wanted = {u.rstrip("/") for u in urls}
        dropped: set[str] = set()
        for url in list(self.endpoints):
            if url not in wanted:
                dropped |= self.endpoints.pop(url).models
                if self.placement is not None:
                    self.placement.forget(url)
                task = self._checkers.pop(url, None)
                if task is not None:
                    task.cancel()
                log.info("replica removed", extra={"upstream": url})
        for url in wanted - self.endpoints.keys():
            endpoint = Endpoint(url)
            self.endpoints[url] = endpoint
            if not self._closed:
                self._checkers[url] = asyncio.create_task(self._check_loop(endpoint), name=f"health {url}")
            log.info("replica added", extra={"upstream": url})
        if dropped:
            self._unlist(dropped)
        self._notify()

    def declare(self, models: Iterable[str]) -> None:
        """Models that exist whatever the replicas list (the catalog's): never forgotten."""
        for model in models:
            self._declared.add(model)
            self.known_models.add(model)
            self._unlisted.pop(model, None)

    def _unlist(self, models: Iterable[str]) -> None:
        """``models`` were dropped from a replica's list (or left with it): those no replica lists now
        join the unlisted, and past ``UNLISTED_MODELS`` of those the longest unlisted are forgotten
        (their replica gauges and adapter bookkeeping with them; counters keep their series).
        Called on a change of lists or membership only: it walks every replica's list."""
        listed: set[str] = set().union(*(e.models for e in self.endpoints.values()))
        for model in sorted(models):  # (sorted: the order forgotten, among those unlisted at once)
            if model not in listed and model not in self._declared:
                self._unlisted.pop(model, None)
                self._unlisted[model] = None
        while len(self._unlisted) > UNLISTED_MODELS:
            model = next(iter(self._unlisted))
            del self._unlisted[model]
            self.known_models.discard(model)
            for state in ("ready", "ejected"):
                self._metrics.drop(self._metrics.replicas, model, state)
            if self.placement is not None:
                self.placement.forget_model(model)
            log.info("model forgotten: no replica has listed it for long", extra={"model": model})

    async def close(self) -> None:
        self._closed = True
        await stop(self._checkers.values())
        self._checkers.clear()

    # -- queries ----------------------------------------------------------------------------------
    def candidates(self, model: str) -> list[Endpoint]:
        now = monotonic()
        return [e for e in self.endpoints.values() if self.serves(e, model) and e.available(now)]

    def serves(self, endpoint: Endpoint, model: str) -> bool:
        """It lists ``model``, or ``model`` is an adapter the gateway loads on demand and it serves the base."""
        if model in endpoint.models:
            return True
        base = self.adapter_bases.get(model)
        return base is not None and base in endpoint.models

    def served(self, endpoint: Endpoint) -> list[str]:
        """Every model a request could be sent to ``endpoint`` for (listed, or loadable adapters of its bases)."""
        loadable = [a for a, base in self.adapter_bases.items() if base in endpoint.models and a not in endpoint.models]
        return [*endpoint.models, *loadable]

    def ready(self) -> bool:
        now = monotonic()
        return any(e.available(now) for e in self.endpoints.values())

    def model_cards(self) -> list[dict[str, Any]]:
        """``/v1/models`` entries of every available replica, one per model id."""
        now = monotonic()
        cards: dict[str, dict[str, Any]] = {}
        for endpoint in self.endpoints.values():
            if endpoint.available(now):
                for model_id, card in endpoint.model_cards.items():
                    cards.setdefault(model_id, card)
        return [cards[k] for k in sorted(cards)]

    def revision(self, model: str) -> str:
        """What identifies the weights behind ``model`` (vLLM's ``root``: path or repo id); part of cache keys."""
        for endpoint in self.endpoints.values():
            card = endpoint.model_cards.get(model)
            if card is not None:
                return str(card.get("root") or "")
        return ""

    def changed(self) -> asyncio.Future[None]:
        """Done at the next change of membership, health or ejections (waiters for capacity re-check)."""
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    def _notify(self) -> None:
        """Membership, health or ejections changed: wake waiters and republish the replica gauges."""
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)
        self._publish_replica_gauges()

    # -- passive health ---------------------------------------------------------------------------
    def record_success(self, endpoint: Endpoint) -> None:
        if endpoint.consecutive_failures:
            self.outliers.success(endpoint)

    def record_failure(self, endpoint: Endpoint, model: str) -> None:
        peers = [e for e in self.endpoints.values() if self.serves(e, model)]
        self.outliers.failure(endpoint, peers, monotonic())

    def _ejected(self, endpoint: Endpoint) -> None:
        for model in endpoint.models:
            self._metrics.ejections.labels(model).inc()
        log.warning(
            "replica ejected",
            extra={
                "upstream": endpoint.url,
                "ejections": endpoint.ejections,
                "seconds": round(endpoint.ejected_until - monotonic(), 1),
            },
        )
        self._notify()
        # Check it again as soon as the ejection ends, not a whole interval later.
        task = self._checkers.get(endpoint.url)
        if task is not None and not self._closed:
            delay = max(0.0, endpoint.ejected_until - monotonic())
            asyncio.get_running_loop().call_later(delay, self._notify)

    # -- active health ----------------------------------------------------------------------------
    async def _check_loop(self, endpoint: Endpoint) -> None:
        interval = self._settings.health.interval
        # While the replica is a member, not only until cancelled: a cancel can be lost (tasks.stop;
        # 23 in 1,000 against a replica that does not answer, which is how a wedged pod leaves).
        while self.endpoints.get(endpoint.url) is endpoint and not self._closed:
            await self.check(endpoint)
            await asyncio.sleep(interval)

    async def check(self, endpoint: Endpoint) -> None:
        healthy, cards = await self._probe(endpoint.url)
        if self.endpoints.get(endpoint.url) is not endpoint:
            return  # it left during the probe (and the cancel was lost): its models and cards are no one's
        changed = healthy != endpoint.healthy
        if healthy:
            models, before = frozenset(cards), endpoint.models
            endpoint.models = models
            endpoint.model_cards = cards
            if models != before:
                changed = True
                self.known_models.update(models)
                for model in models - before:
                    self._unlisted.pop(model, None)
                if before - models:
                    self._unlist(before - models)
            if self.placement is not None:
                self.placement.observe_cards(endpoint.url, cards)
            # consecutive_failures is left alone: a replica that answers /health but fails requests
            # must still be ejected (as in Envoy, only a request's success resets the count).
        endpoint.healthy = healthy
        if changed:
            log.info(
                "replica %s",
                "healthy" if healthy else "unhealthy",
                extra={"upstream": endpoint.url, "models": sorted(endpoint.models)},
            )
            self._notify()

    async def _probe(self, url: str) -> tuple[bool, dict[str, dict[str, Any]]]:
        timeout = aiohttp.ClientTimeout(total=self._settings.health.timeout)
        try:
            async with self._session.get(f"{url}/health", timeout=timeout) as resp:
                if resp.status != 200:
                    return False, {}
            async with self._session.get(f"{url}/v1/models", timeout=timeout) as resp:
                if resp.status != 200:
                    return False, {}
                data = orjson.loads(await read_bounded(resp, MODELS_BYTES))
            cards = {str(card["id"]): card for card in data.get("data", []) if "id" in card}
            return bool(cards), cards
        except TooLarge as exc:
            # A replica whose model list is this large is broken: out of rotation, and said so.
            log.warning("replica unhealthy: its /v1/models is too large", extra={"upstream": url, "error": str(exc)})
            return False, {}
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError, TypeError, AttributeError):
            return False, {}

    def _publish_replica_gauges(self) -> None:
        now = monotonic()
        counts: dict[str, list[int]] = {m: [0, 0] for m in self.known_models}
        for endpoint in self.endpoints.values():
            for model in endpoint.models:
                if endpoint.healthy:
                    counts.setdefault(model, [0, 0])[0 if endpoint.available(now) else 1] += 1
        for model, (ready, ejected) in counts.items():
            self._metrics.replicas.labels(model, "ready").set(ready)
            self._metrics.replicas.labels(model, "ejected").set(ejected)
