"""Byte stores behind the response cache and the Idempotency-Key records.

``MemoryStore``: one process, TTL per entry, a bound on total bytes with least-recently-used
eviction. ``RedisStore``: shared; its size bound is Redis's own (``maxmemory`` with an LRU policy,
preferably on a Redis of its own so eviction never touches rate-limit state).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from ..clock import Clock, monotonic


class Store(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        """Set only if absent; True if this call set it."""
        ...

    async def delete(self, key: str) -> None: ...


class MemoryStore:
    def __init__(
        self,
        max_bytes: int,
        clock: Clock = monotonic,
        on_evict: Callable[[int], None] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._clock = clock
        self._on_evict = on_evict
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        item = self._entries.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        if len(value) > self.max_bytes:
            return
        if key in self._entries:
            self._remove(key)
        self._entries[key] = (self._clock() + ttl, value)
        self.bytes += len(value)
        evicted = 0
        while self.bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            evicted += 1
        if evicted:
            self.evictions += evicted
            if self._on_evict is not None:
                self._on_evict(evicted)

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        if await self.get(key) is not None:
            return False
        await self.set(key, value, ttl)
        return key in self._entries

    async def delete(self, key: str) -> None:
        if key in self._entries:
            self._remove(key)

    def _remove(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self.bytes -= len(value)


class TenantStores:
    """One ``MemoryStore`` per tenant, each with its own byte bound: a tenant that fills its store
    evicts only its own entries. Tenants are those of the key file (bounded by it); ``retain``
    drops the stores of tenants that left it."""

    def __init__(self, max_bytes_per_tenant: int, clock: Clock = monotonic) -> None:
        self.max_bytes = max_bytes_per_tenant
        self._clock = clock
        self._stores: dict[str, MemoryStore] = {}

    def __call__(self, tenant: str) -> MemoryStore:
        store = self._stores.get(tenant)
        if store is None:
            store = self._stores[tenant] = MemoryStore(self.max_bytes, self._clock)
        return store

    def retain(self, tenants: frozenset[str]) -> None:
        for gone in self._stores.keys() - tenants:
            del self._stores[gone]


class RedisStore:
    def __init__(self, redis: Any, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(self._prefix + key)
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._redis.set(self._prefix + key, value, px=max(1, int(ttl * 1000)))

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        return bool(await self._redis.set(self._prefix + key, value, px=max(1, int(ttl * 1000)), nx=True))

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)
