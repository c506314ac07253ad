"""The tenancy filters as two calls on the request path: ``admit`` before routing, ``finish`` after.

    adm = await tenancy.admit(kind, payload, body, scope_headers, revision)   # 401/403/429/422 raise
    try:
        if adm.cached is not None: send it (adm.replay_events(...) for a stream)
        else: route, relay (feeding adm.assembler every SSE event if it is set)
    finally:
        await tenancy.finish(adm, status=..., usage=..., response=..., reached_upstream=...)

``finish`` is idempotent and never raises: it frees the concurrency slot first, then accounts,
stores the answer in the cache and completes the Idempotency-Key. Integration contract: README.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..clock import Clock, wall
from ..config import TenancySettings
from ..errors import GatewayError, NotFoundError, QuotaExceededError
from .auth import ANONYMOUS_PRINCIPAL, Principal, authenticate, check_admin
from .cache_key import BYPASS, cache_key, cache_policy
from .cache_store import MemoryStore, Store, TenantStores
from .dependency import REDIS_ERRORS, RedisHealth
from .filewatch import WatchedFile
from .idempotency import Claim, Idempotency, Replay
from .keys import KeyRing
from .ledger import Ledger, Usage
from .limits import Headers, Limiter, LimitExceeded, Reservation
from .metrics import TenancyMetrics
from .prices import NANO, PriceTable
from .replay import StreamAssembler, sse_events
from .tokens import reserved_split

log = logging.getLogger("inferstack.filters")
CACHE_HEADER = b"x-inferstack-cache"
REQUEST_HEADERS = frozenset({b"authorization", b"cache-control", CACHE_HEADER, b"idempotency-key"})
"""The request headers ``admit`` reads: a caller may pass it only these."""
_HIT, _MISS, _BYPASS = ((CACHE_HEADER, v) for v in (b"hit", b"miss", b"bypass"))


@dataclass(slots=True)
class Admission:
    """One admitted request. ``headers`` go on the response, whatever it turns out to be."""

    principal: Principal
    tenant_label: str  # for metric labels and the access log
    kind: str
    model: str
    stream: bool
    reservation: Reservation | None
    headers: Headers = field(default_factory=list)
    cached: bytes | None = None  # an answer to send instead of calling an upstream
    cached_status: int = 200
    cache_key: str | None = None  # store a 200 answer under this key
    claim: Claim | None = None
    budget_hold: str | None = None  # the hold on the tenant's budget, settled to the real cost by finish
    assembler: StreamAssembler | None = None  # feed it every SSE event when set
    finished: bool = False

    def replay_events(self, include_usage: bool) -> list[bytes]:
        """A cached answer as the SSE events of a stream (for ``stream: true`` requests)."""
        assert self.cached is not None
        return sse_events(self.kind, self.cached, include_usage)


def _month_end(at: float) -> float:
    now = datetime.fromtimestamp(at, UTC)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


class Tenancy:
    def __init__(
        self,
        options: TenancySettings,
        *,
        auth_enabled: bool,
        keys: WatchedFile[KeyRing] | None,
        prices: WatchedFile[PriceTable] | None,
        limiter: Limiter,
        ledger: Ledger,
        cache: Store,
        idempotency: Idempotency,
        metrics: TenancyMetrics,
        admin_key_sha256: str = "",
        clock: Clock = wall,
        redis_health: RedisHealth | None = None,
        on_redis: frozenset[str] = frozenset(),
        redis: Any = None,
    ) -> None:
        self.options = options
        self.auth_enabled = auth_enabled
        self.keys = keys
        self.prices = prices
        # Without a key file or a price file: one empty value each, not a new one per request.
        self._no_keys = KeyRing.empty()
        self._no_prices = PriceTable()
        self.limiter = limiter
        self.ledger = ledger
        self.cache = cache
        self.idempotency = idempotency
        self.metrics = metrics
        self._admin = admin_key_sha256
        self._clock = clock
        self.redis_health = redis_health
        self.redis = redis
        """The Redis client (None without ``redis_url``): other lifespan resources share it and its health."""
        self._on_redis = on_redis if redis_health is not None else frozenset()
        self.tasks: list[asyncio.Task[Any]] = []
        """The Redis health check and the file watchers, run by ``open_tenancy`` (the app supervises them)."""
        self.key_ring_changed(self.ring)

    @property
    def ring(self) -> KeyRing:
        return self.keys.value if self.keys is not None else self._no_keys

    def key_ring_changed(self, ring: KeyRing) -> None:
        self.metrics.set_tenants(ring.tenants, self.options.max_tenant_labels)
        stores = self.idempotency.stores
        if isinstance(stores, TenantStores):
            stores.retain(ring.tenants | {ANONYMOUS_PRINCIPAL.tenant})

    # -- step 1: admit ----------------------------------------------------------------------------
    async def admit(
        self,
        kind: str,
        payload: dict[str, Any],
        body: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        revision: str = "",
        model_exists: bool = True,
    ) -> Admission:
        """Authenticate, check the model, budget and limits, then the Idempotency-Key and the cache.

        ``payload`` is the validated request (``model`` a string); ``headers`` the ASGI scope's raw
        headers (or only those named in ``REQUEST_HEADERS``: no other is read); ``revision`` the
        model's revision (part of the cache key); ``model_exists``: does any replica (or the
        declared list) know the model? Raises the gateway's errors: 401, 403,
        404 (after auth: an unauthenticated caller learns nothing about which models exist; before
        limits and the ledger: an unknown name is recorded nowhere), 429 (``LimitExceeded`` /
        ``QuotaExceededError``), 422, 400.
        """
        wanted: dict[bytes, str] = {}
        for name, value in headers:
            if name in REQUEST_HEADERS:
                wanted[name] = value.decode("latin-1")
        model: str = payload["model"]
        if self.auth_enabled:
            principal = authenticate(self.ring, wanted.get(b"authorization"), model)
        else:
            principal = ANONYMOUS_PRINCIPAL
        label = self.metrics.tenant_label(principal.tenant)
        try:
            if not model_exists:
                raise NotFoundError(f"The model '{model}' does not exist.", param="model", code="model_not_found")
            return await self._admit(kind, payload, body, wanted, revision, principal, label)
        except GatewayError as err:
            err.tenant = label  # a refusal after the key was read is logged as its tenant's
            raise

    async def _admit(
        self,
        kind: str,
        payload: dict[str, Any],
        body: bytes,
        wanted: dict[bytes, str],
        revision: str,
        principal: Principal,
        label: str,
    ) -> Admission:
        model: str = payload["model"]
        stream = payload.get("stream") is True
        reservation = None
        hold = None
        entry = principal.entry
        if entry is not None:
            prompt, completion = reserved_split(kind, payload, self.options.limits.default_max_tokens)
            budget = self.ring.budgets.get(principal.tenant)
            if budget is not None and not self._redis_down("budgets"):
                try:
                    hold = await self._hold_budget(principal.tenant, label, model, budget, prompt, completion)
                except REDIS_ERRORS as exc:
                    self._redis_failed("budgets", exc)
            limited = entry.rpm is not None or entry.tpm is not None or entry.max_concurrency is not None
            try:
                if limited and not self._redis_down("limits"):
                    try:
                        reservation = await self.limiter.acquire(entry, prompt + completion)
                    except LimitExceeded as err:
                        self.metrics.rate_limited.labels(label, err.limit).inc()
                        raise
                    except REDIS_ERRORS as exc:
                        self._redis_failed("limits", exc)
            except BaseException:
                if hold is not None:
                    await self._release_hold(principal.tenant, hold)
                raise
        adm = Admission(
            principal,
            label,
            kind,
            model,
            stream,
            reservation,
            list(reservation.headers) if reservation is not None else [],
            budget_hold=hold,
        )
        try:
            await self._lookup(adm, payload, body, wanted, revision)
        except BaseException:
            await self._settle(adm, 0)
            if hold is not None:
                await self._release_hold(principal.tenant, hold)
            raise
        return adm

    def _redis_down(self, feature: str, *, admitting: bool = True) -> bool:
        """Is ``feature`` on a Redis known to be down? Then skip it (True), or, while admitting, raise
        503 if it fails closed. Either way the request is counted."""
        health = self.redis_health
        if health is None or health.up or feature not in self._on_redis:
            return False
        if admitting:
            health.refuse(feature)
        else:
            health.count(feature)
        return True

    def _redis_failed(self, feature: str, exc: BaseException) -> None:
        """A Redis call of ``feature`` failed: Redis is down from now on; apply the feature's policy."""
        assert self.redis_health is not None  # memory backends raise none of REDIS_ERRORS
        self.redis_health.mark_down(feature, exc)
        self.redis_health.refuse(feature)

    async def _hold_budget(
        self, tenant: str, label: str, model: str, budget: float, prompt: int, completion: int
    ) -> str | None:
        """Hold the request's maximum cost against the budget, or raise 429 ``insufficient_quota``."""
        now = self._clock()
        prices = self.prices.value if self.prices is not None else self._no_prices
        budget_nano = round(budget * NANO)
        # Bounded: more than the whole budget is refused whatever it is, and Lua numbers are doubles.
        most = min(prices.cost_nano(model, prompt, completion), budget_nano + 1)
        hold = await self.ledger.hold(tenant, now, most, budget_nano, self.options.limits.lease_ttl)
        if hold is not None:
            return hold
        self.metrics.rate_limited.labels(label, "budget").inc()
        spend = await self.ledger.month_spend(tenant, now)
        if spend >= budget_nano:
            raise QuotaExceededError(
                f"Tenant '{tenant}' has used its monthly budget of {budget:.2f} USD.",
                retry_after=_month_end(now) - now,
            )
        raise QuotaExceededError(
            f"This request may cost up to {most / NANO:.6f} USD, more than what is left of tenant '{tenant}'s"
            f" monthly budget of {budget:g} USD once the requests in flight are paid. Lower max_tokens,"
            " or retry when they finish.",
            retry_after=1,
        )

    async def _release_hold(self, tenant: str, hold: str) -> None:
        try:
            await self.ledger.release(tenant, hold)
        except Exception:  # Redis down: the hold expires after lease_ttl
            log.warning("releasing a budget hold failed", extra={"tenant": tenant})

    async def _lookup(
        self, adm: Admission, payload: dict[str, Any], body: bytes, wanted: dict[bytes, str], revision: str
    ) -> None:
        idem_key = wanted.get(b"idempotency-key")
        if idem_key is not None and not self._redis_down("idempotency"):
            try:
                found = await self.idempotency.begin(adm.principal.tenant, idem_key, body)
            except REDIS_ERRORS as exc:
                self._redis_failed("idempotency", exc)
            else:
                if isinstance(found, Replay):
                    adm.cached, adm.cached_status = found.body, found.status
                    adm.headers.append((b"x-inferstack-idempotent-replay", b"true"))
                    return
                adm.claim = found
        opts = self.options.cache
        policy = cache_policy(adm.kind, payload, wanted.get(b"cache-control"), wanted.get(CACHE_HEADER))
        if opts.enabled and policy.store:
            scope = adm.principal.tenant if opts.per_tenant else ""
            key = cache_key(adm.kind, payload, revision, scope)
            hit = None
            if self._redis_down("cache"):
                policy = BYPASS
            elif policy.lookup:
                try:
                    hit = await self.cache.get(key)
                except REDIS_ERRORS as exc:
                    self._redis_failed("cache", exc)
                    policy = BYPASS
            if hit is not None:
                self.metrics.cache_result("hit")
                adm.cached = hit
                adm.headers.append(_HIT)
                return
            if policy.store:
                self.metrics.cache_result("miss")
                adm.headers.append(_MISS)
                adm.cache_key = key
        if adm.cache_key is None:
            self.metrics.cache_result("bypass")
            adm.headers.append(_BYPASS)
        if adm.stream and (adm.cache_key is not None or adm.claim is not None):
            adm.assembler = StreamAssembler(adm.kind)

    # -- step 2: finish ---------------------------------------------------------------------------
    async def finish(
        self,
        adm: Admission,
        *,
        status: int,
        usage: Mapping[str, Any] | None = None,
        response: bytes | None = None,
        reached_upstream: bool = True,
    ) -> None:
        """Always call once, in a ``finally``. Never raises.

        ``status``: what the client got (499 if it left). ``usage``: the upstream's ``usage`` object
        if one arrived. ``response``: the whole body of a non-stream 200 (streams: the assembler has
        it). ``reached_upstream``: False if no upstream was asked (cache hit, no replica, error before
        routing): the reserved tokens are then all given back. Reached with no usage: the
        reservation stands, since the tokens may have been spent.
        """
        if adm.finished:
            return
        adm.finished = True
        from_cache = adm.cached is not None
        prompt = _int(usage, "prompt_tokens")
        completion = _int(usage, "completion_tokens")
        used: int | None
        if from_cache or not reached_upstream:
            used = 0
        elif prompt is not None or completion is not None:
            used = (prompt or 0) + (completion or 0)
        else:
            used = None
        if adm.reservation is not None:  # (most requests hold none: no coroutine to make)
            await self._settle(adm, used)
        feature = "accounting"
        try:
            if not self._redis_down(feature, admitting=False):
                await self._account(adm, from_cache, prompt or 0, completion or 0)
            # (Redis down: the budget hold expires after lease_ttl, like a concurrency lease)
            if from_cache:
                response = adm.cached
            elif adm.stream:
                response = adm.assembler.result() if adm.assembler is not None and status == 200 else None
            ok = status == 200 and response is not None
            if (
                ok
                and not from_cache
                and adm.cache_key is not None
                and response is not None
                and len(response) <= self.options.cache.max_entry_bytes
                and not self._redis_down(feature := "cache", admitting=False)
            ):
                await self.cache.set(adm.cache_key, response, self.options.cache.ttl)
                self._cache_gauge()
            if adm.claim is not None and not self._redis_down(feature := "idempotency", admitting=False):
                # A claim left behind (Redis down now) expires after lease_ttl by itself.
                if ok and response is not None:
                    await self.idempotency.complete(adm.claim, status, response)
                else:
                    await self.idempotency.abandon(adm.claim)
        except REDIS_ERRORS as exc:
            assert self.redis_health is not None
            self.redis_health.mark_down(feature, exc)
            self.redis_health.count(feature)
        except Exception:
            log.exception("tenancy finish failed", extra={"tenant": adm.principal.tenant})

    async def _settle(self, adm: Admission, used: int | None) -> None:
        if adm.reservation is None or self._redis_down("limits", admitting=False):
            return  # (Redis down: the lease expires by itself after lease_ttl)
        try:
            await self.limiter.settle(adm.reservation, used)
        except REDIS_ERRORS as exc:
            assert self.redis_health is not None
            self.redis_health.mark_down("limits", exc)
            self.redis_health.count("limits")
        except Exception:
            log.exception("releasing a rate-limit reservation failed", extra={"tenant": adm.principal.tenant})

    async def _account(self, adm: Admission, from_cache: bool, prompt: int, completion: int) -> None:
        tenant = adm.principal.tenant
        prices = self.prices.value if self.prices is not None else self._no_prices
        cost = 0 if from_cache else prices.cost_nano(adm.model, prompt, completion)
        usage = Usage(1, int(from_cache), 0 if from_cache else prompt, 0 if from_cache else completion, cost)
        spend = await self.ledger.record(tenant, adm.model, usage, self._clock(), adm.budget_hold)
        if cost:
            self.metrics.cost.labels(adm.tenant_label, adm.model).inc(cost / NANO)
        budget = self.ring.budgets.get(tenant)
        if budget and adm.tenant_label == tenant:
            self.metrics.budget_used.labels(tenant).set(spend / (budget * NANO))

    def _cache_gauge(self) -> None:
        if isinstance(self.cache, MemoryStore):
            self.metrics.cache_bytes.set(self.cache.bytes)

    # -- the admin endpoint -----------------------------------------------------------------------
    async def usage_report(self, authorization: str | None, start: float, end: float) -> dict[str, Any]:
        """``GET /admin/usage?start=&end=`` (epoch seconds): usage and spend per tenant and model.

        Raises 401 without the admin key, ``ValueError`` for a bad range (answer 400).
        """
        check_admin(self._admin, authorization)
        if end <= start:
            raise ValueError("end must be after start")
        rows = await self.ledger.report(start, end)
        now = self._clock()
        tenants = {}
        for tenant, budget in sorted(self.ring.budgets.items()):
            spend = await self.ledger.month_spend(tenant, now)
            tenants[tenant] = {"monthly_budget_usd": budget, "month_spend_usd": spend / NANO}
        return {"object": "usage_report", "start": start, "end": end, "data": rows, "tenants": tenants}


def _int(usage: Mapping[str, Any] | None, name: str) -> int | None:
    value = usage.get(name) if usage else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
