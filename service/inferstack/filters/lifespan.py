"""The tenancy filters as a lifespan resource: built from settings, their watchers run, closed on exit.

``open_tenancy`` chooses each store by configuration (Redis when ``redis_url`` is set, else memory
bounded per process), starts the Redis health check and the key and price file watchers, and on
exit cancels them and closes the Redis client. Integration contract: filters/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from ..config import TenancySettings
from ..tasks import stop
from .cache_store import MemoryStore, RedisStore, Store, TenantStores
from .dependency import DependencyMetrics, RedisHealth, redis_client
from .filewatch import WatchedFile
from .idempotency import Idempotency
from .keys import parse_keys
from .ledger import Ledger, MemoryLedger, RedisLedger
from .limits import Limiter, MemoryLimiter
from .limits_redis import RedisLimiter
from .metrics import TenancyMetrics
from .prices import parse_prices
from .tenancy import Tenancy


@contextlib.asynccontextmanager
async def open_tenancy(
    options: TenancySettings,
    *,
    registry: CollectorRegistry,
    auth_enabled: bool = True,
    keys_file: str = "",
    admin_key_sha256: str = "",
    redis_url: str = "",
    prices_file: str = "",
    rate_limited: Counter | None = None,
) -> AsyncIterator[Tenancy]:
    """Build from settings, run the file watchers, close everything on exit (a lifespan resource)."""
    if auth_enabled and not keys_file:
        raise ValueError("auth is enabled but no keys file is configured (INFERSTACK_KEYS_FILE)")
    if options.cache.backend == "redis" and not redis_url:
        raise ValueError("cache backend redis needs INFERSTACK_REDIS_URL")
    keys = WatchedFile(keys_file, parse_keys, "key file") if keys_file else None
    prices = WatchedFile(prices_file, parse_prices, "price file") if prices_file else None
    metrics = TenancyMetrics(registry, rate_limited)
    cache_opts = options.cache
    on_redis = frozenset(("limits", "budgets", "idempotency", "accounting")) | (
        {"cache"} if cache_opts.backend == "redis" else set()
    )
    redis: Any = None
    health = None
    if redis_url:
        redis = redis_client(redis_url, options.redis)
        health = RedisHealth(redis, options.redis, DependencyMetrics(registry), on_redis)
    limiter: Limiter
    ledger: Ledger
    cache: Store
    idem_stores: Callable[[str], Store]
    if redis is not None:
        limiter = RedisLimiter(redis, lease_ttl=options.limits.lease_ttl)
        ledger = RedisLedger(redis, retention_days=options.usage_retention_days)
        shared = RedisStore(redis, "inferstack:idem:")

        def idem_stores(tenant: str) -> Store:
            return shared  # one store: record keys carry the tenant; Redis's maxmemory bounds it

    else:
        limiter, ledger = MemoryLimiter(), MemoryLedger(options.usage_retention_days)
        idem_stores = TenantStores(cache_opts.idempotency_max_bytes_per_tenant)
    if cache_opts.backend == "redis":
        cache = RedisStore(redis, "inferstack:cache:")
    else:
        cache = MemoryStore(cache_opts.max_bytes, on_evict=metrics.cache_evictions.inc)
    idempotency = Idempotency(
        idem_stores,
        ttl=cache_opts.idempotency_ttl,
        pending_ttl=options.limits.lease_ttl,
        wait=cache_opts.idempotency_wait,
    )
    tenancy = Tenancy(
        options,
        auth_enabled=auth_enabled,
        keys=keys,
        prices=prices,
        limiter=limiter,
        ledger=ledger,
        cache=cache,
        idempotency=idempotency,
        metrics=metrics,
        admin_key_sha256=admin_key_sha256,
        redis_health=health,
        on_redis=on_redis,
        redis=redis,
    )
    tasks = tenancy.tasks
    if health is not None:
        tasks.append(asyncio.create_task(health.run(), name="redis health"))
    if keys is not None:
        watch_keys = keys.run(options.reload_interval, tenancy.key_ring_changed)
        tasks.append(asyncio.create_task(watch_keys, name="key file watcher"))
    if prices is not None:
        tasks.append(asyncio.create_task(prices.run(options.reload_interval), name="price file watcher"))
    try:
        yield tenancy
    finally:
        await stop(tasks)
        if redis is not None:
            await redis.aclose()
