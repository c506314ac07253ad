"""Usage and spend per tenant and model, in hourly buckets, plus each tenant's spend this month.

The monthly spend is what budgets are checked against; the hourly buckets answer the admin
endpoint's "usage and spend per tenant for a time range".

Budgets are exact under concurrency: an admitted request holds its maximum cost (``hold``) until it
is recorded, and a request is admitted only if spend + every hold + its own maximum fits the
budget, checked and held in one step (no ``await`` in between in memory, one Lua script on Redis),
so N concurrent requests cannot overshoot by N x their cost. ``record(..., hold=)`` adds the real
cost and drops the hold. A hold left by a gateway that died expires after its ``ttl``.

Everything exists in memory (one process, lost on restart) and in Redis (shared, survives
restarts). Money is integer nano-USD throughout.
"""

from __future__ import annotations

import functools
import itertools
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from .prices import NANO

HOUR = 3600
FIELDS = ("requests", "cached_requests", "prompt_tokens", "completion_tokens", "cost_nano")
MAX_REPORT_HOURS = 24 * 400


@dataclass(frozen=True, slots=True)
class Usage:
    requests: int = 1
    cached_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_nano: int = 0

    def values(self) -> tuple[int, int, int, int, int]:
        return self.requests, self.cached_requests, self.prompt_tokens, self.completion_tokens, self.cost_nano


def month_of(at: float) -> str:
    # On every request's path: a month only changes on an hour boundary, so cache per hour.
    return _month_of_hour(int(at // HOUR))


@functools.lru_cache(maxsize=8)
def _month_of_hour(hour: int) -> str:
    return datetime.fromtimestamp(hour * HOUR, UTC).strftime("%Y%m")


def hours_in(start: float, end: float) -> range:
    first, last = int(start // HOUR), int(-(-end // HOUR)) - 1  # end is exclusive
    if last - first + 1 > MAX_REPORT_HOURS:
        raise ValueError(f"the range may span at most {MAX_REPORT_HOURS // 24} days")
    return range(first, last + 1)


class Ledger(Protocol):
    async def record(self, tenant: str, model: str, usage: Usage, at: float, hold: str | None = None) -> int:
        """Add usage and drop ``hold``; returns the tenant's spend this month in nano-USD, after it."""
        ...

    async def hold(self, tenant: str, at: float, amount: int, budget: int, ttl: float) -> str | None:
        """Hold ``amount`` nano-USD if spend + holds + amount <= budget: the hold's id, or None (refused)."""
        ...

    async def release(self, tenant: str, hold: str) -> None:
        """Drop a hold without recording anything (the request was refused after its hold)."""
        ...

    async def month_spend(self, tenant: str, at: float) -> int: ...

    async def report(self, start: float, end: float) -> list[dict[str, Any]]:
        """Rows per (tenant, model) over the hours overlapping [start, end)."""
        ...


def _rows(totals: dict[tuple[str, str], list[int]]) -> list[dict[str, Any]]:
    rows = []
    for (tenant, model), values in sorted(totals.items()):
        row: dict[str, Any] = {"tenant": tenant, "model": model, **dict(zip(FIELDS, values, strict=True))}
        row["cost_usd"] = row.pop("cost_nano") / NANO
        rows.append(row)
    return rows


class MemoryLedger:
    def __init__(self, retention_days: int = 400) -> None:
        self._hours: dict[tuple[int, str, str], list[int]] = {}
        self._months: dict[tuple[str, str], int] = defaultdict(int)
        self._retention = retention_days * 24
        self._pruned_at = 0
        self._holds: dict[str, tuple[str, int]] = {}  # hold id -> (tenant, amount)
        self._held: dict[str, int] = {}  # tenant -> sum of its holds
        self._hold_ids = itertools.count(1)

    async def hold(self, tenant: str, at: float, amount: int, budget: int, ttl: float) -> str | None:
        # In one process the hold lives as long as its request: ``ttl`` is for shared stores.
        held = self._held.get(tenant, 0)
        spend = self._months.get((tenant, month_of(at)), 0)
        if spend >= budget or spend + held + amount > budget:
            return None
        hold = str(next(self._hold_ids))
        self._holds[hold] = (tenant, amount)
        self._held[tenant] = held + amount
        return hold

    async def release(self, tenant: str, hold: str) -> None:
        found = self._holds.pop(hold, None)
        if found is not None:
            left = self._held[found[0]] - found[1]
            if left:
                self._held[found[0]] = left
            else:
                del self._held[found[0]]

    async def record(self, tenant: str, model: str, usage: Usage, at: float, hold: str | None = None) -> int:
        if hold is not None:
            await self.release(tenant, hold)
        hour = int(at // HOUR)
        bucket = self._hours.get((hour, tenant, model))
        if bucket is None:
            bucket = self._hours[(hour, tenant, model)] = [0] * len(FIELDS)
            self._prune(hour)
        for i, value in enumerate(usage.values()):
            bucket[i] += value
        key = (tenant, month_of(at))
        self._months[key] += usage.cost_nano
        return self._months[key]

    def _prune(self, hour: int) -> None:
        if hour == self._pruned_at:
            return
        self._pruned_at = hour
        oldest = hour - self._retention
        for key in [k for k in self._hours if k[0] < oldest]:
            del self._hours[key]

    async def month_spend(self, tenant: str, at: float) -> int:
        return self._months.get((tenant, month_of(at)), 0)

    async def report(self, start: float, end: float) -> list[dict[str, Any]]:
        hours = hours_in(start, end)
        totals: dict[tuple[str, str], list[int]] = {}
        for (hour, tenant, model), values in self._hours.items():
            if hour in hours:
                acc = totals.setdefault((tenant, model), [0] * len(FIELDS))
                for i, value in enumerate(values):
                    acc[i] += value
        return _rows(totals)


# KEYS: the month's spend, the tenant's holds (hash: hold id -> "amount:expiry ms"). ARGV: amount,
# budget, hold id, ttl ms. Expired holds are dropped on the way. Returns 1 (held) or 0 (refused).
HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = 0
local holds = redis.call('HGETALL', KEYS[2])
for i = 1, #holds, 2 do
  local amount, expiry = string.match(holds[i + 1], '(%d+):(%d+)')
  if tonumber(expiry) <= now then redis.call('HDEL', KEYS[2], holds[i]) else held = held + tonumber(amount) end
end
local spend = tonumber(redis.call('GET', KEYS[1]) or '0')
local budget = tonumber(ARGV[2])
if spend >= budget or spend + held + tonumber(ARGV[1]) > budget then return 0 end
local ttl = tonumber(ARGV[4])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1] .. ':' .. string.format('%d', now + ttl))
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
"""


class RedisLedger:
    """Hourly hashes ``<prefix>usage:<hour>`` with fields ``tenant|model|field``; monthly spend per
    tenant; the tenant's budget holds in one hash (same hash tag as its spend: one slot)."""

    def __init__(self, redis: Any, *, retention_days: int = 400, prefix: str = "inferstack:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._retention = retention_days * 86400
        self._hold = redis.register_script(HOLD)

    def spend_key(self, tenant: str, at: float) -> str:
        return f"{self._prefix}{{{tenant}}}:spend:{month_of(at)}"

    def holds_key(self, tenant: str) -> str:
        return f"{self._prefix}{{{tenant}}}:holds"

    async def hold(self, tenant: str, at: float, amount: int, budget: int, ttl: float) -> str | None:
        hold = uuid.uuid4().hex
        keys = [self.spend_key(tenant, at), self.holds_key(tenant)]
        held = await self._hold(keys=keys, args=[amount, budget, hold, max(1, int(ttl * 1000))])
        return hold if int(held) == 1 else None

    async def release(self, tenant: str, hold: str) -> None:
        await self._redis.hdel(self.holds_key(tenant), hold)

    async def record(self, tenant: str, model: str, usage: Usage, at: float, hold: str | None = None) -> int:
        hour_key = f"{self._prefix}usage:{int(at // HOUR)}"
        spend_key = self.spend_key(tenant, at)
        pipe = self._redis.pipeline(transaction=False)
        for name, value in zip(FIELDS, usage.values(), strict=True):
            if value:
                pipe.hincrby(hour_key, f"{tenant}|{model}|{name}", value)
        pipe.expire(hour_key, self._retention)
        pipe.incrby(spend_key, usage.cost_nano)
        pipe.expire(spend_key, 40 * 86400)  # the month, plus slack for a late report
        if hold is not None:
            pipe.hdel(self.holds_key(tenant), hold)  # after the spend: never a moment with neither
        results = await pipe.execute()
        return int(results[-3 if hold is not None else -2])

    async def month_spend(self, tenant: str, at: float) -> int:
        value = await self._redis.get(self.spend_key(tenant, at))
        return int(value) if value is not None else 0

    async def report(self, start: float, end: float) -> list[dict[str, Any]]:
        pipe = self._redis.pipeline(transaction=False)
        for hour in hours_in(start, end):
            pipe.hgetall(f"{self._prefix}usage:{hour}")
        totals: dict[tuple[str, str], list[int]] = {}
        for bucket in await pipe.execute():
            for raw_field, raw_value in bucket.items():
                text = raw_field.decode()
                tenant, _, rest = text.partition("|")
                model, _, name = rest.rpartition("|")
                acc = totals.setdefault((tenant, model), [0] * len(FIELDS))
                acc[FIELDS.index(name)] += int(raw_value)
        return _rows(totals)
