"""Usage and spend per tenant and model, in hourly buckets, plus each tenant's spend this month.

The monthly spend is what budgets are checked against; the hourly buckets answer the admin
endpoint's "usage and spend per tenant for a time range". Both exist in memory (one process, lost on
restart) and in Redis (shared, survives restarts). Money is integer nano-USD throughout.
"""

from __future__ import annotations

import functools
import time
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
    async def record(self, tenant: str, model: str, usage: Usage, at: float) -> int:
        """Add usage; returns the tenant's spend this month in nano-USD, after it."""
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

    async def record(self, tenant: str, model: str, usage: Usage, at: float) -> int:
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


class RedisLedger:
    """Hourly hashes ``<prefix>usage:<hour>`` with fields ``tenant|model|field``; monthly spend per tenant."""

    def __init__(self, redis: Any, *, retention_days: int = 400, prefix: str = "inferstack:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._retention = retention_days * 86400

    def spend_key(self, tenant: str, at: float) -> str:
        return f"{self._prefix}{{{tenant}}}:spend:{month_of(at)}"

    async def record(self, tenant: str, model: str, usage: Usage, at: float) -> int:
        hour_key = f"{self._prefix}usage:{int(at // HOUR)}"
        spend_key = self.spend_key(tenant, at)
        pipe = self._redis.pipeline(transaction=False)
        for name, value in zip(FIELDS, usage.values(), strict=True):
            if value:
                pipe.hincrby(hour_key, f"{tenant}|{model}|{name}", value)
        pipe.expire(hour_key, self._retention)
        pipe.incrby(spend_key, usage.cost_nano)
        pipe.expire(spend_key, 40 * 86400)  # the month, plus slack for a late report
        results = await pipe.execute()
        return int(results[-2])

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


def now() -> float:
    return time.time()
