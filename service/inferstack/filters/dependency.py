"""Redis as a dependency: a client with explicit timeouts, whether Redis is up, and the policy.

A refused or hung Redis must cost a request at most one command timeout, and then none: the first
failure marks Redis down, and while it is down the filters do not call it but apply each feature's
policy at once (``RedisSettings``: ``open`` steps aside, ``closed`` answers 503). A PING every
``check_interval`` seconds marks it up again. ``/readyz`` fails while Redis is down and any feature
fails closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..config import RedisSettings
from ..errors import DependencyUnavailableError

log = logging.getLogger("inferstack.filters")

# What a Redis call raises when Redis is unreachable, hung or broken (redis-py wraps most of it).
REDIS_ERRORS = (RedisError, OSError, TimeoutError)
FEATURES = ("limits", "budgets", "cache", "idempotency", "accounting", "adapters")
"""``adapters``: the placement record shared by the gateways (``upstream.adapter_share``); always fails open."""


def redis_client(url: str, options: RedisSettings) -> Redis:
    # No retries: a retry against a hung server doubles the wait, and the policy decides instead.
    return Redis.from_url(
        url,
        socket_connect_timeout=options.connect_timeout,
        socket_timeout=options.command_timeout,
        retry=Retry(NoBackoff(), 0),
    )


class DependencyMetrics:
    """``inferstack_dependency_up`` and ``inferstack_dependency_errors_total`` (docs/metrics.md)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "inferstack_dependency_up",
            "1 while a dependency answers its health check.",
            ["dependency"],
            registry=registry,
        )
        self.errors = Counter(
            "inferstack_dependency_errors",
            "Requests a feature served without its dependency (failed, timed out, or skipped while it is down).",
            ["dependency", "feature"],
            registry=registry,
        )


class RedisHealth:
    """Is Redis up? Flipped down by the first failure, up by a successful PING."""

    def __init__(
        self, redis: Any, options: RedisSettings, metrics: DependencyMetrics, features: frozenset[str]
    ) -> None:
        self._redis = redis
        self.options = options
        self.features = features  # the features whose state is on Redis (the cache may be in memory)
        self.up = True  # until a call or a PING fails: a gateway must not start as "down"
        self._gauge = metrics.up.labels("redis")
        self._gauge.set(1)
        self._errors = {f: metrics.errors.labels("redis", f) for f in FEATURES}

    def mark_down(self, feature: str, exc: BaseException | None) -> None:
        if self.up:
            self.up = False
            self._gauge.set(0)
            log.error("redis is down; applying the failure policy", extra={"feature": feature, "error": repr(exc)})

    def count(self, feature: str) -> None:
        self._errors[feature].inc()

    def refuse(self, feature: str) -> None:
        """Count a request ``feature`` could not serve; raise the 503 if the feature fails closed."""
        self._errors[feature].inc()
        if feature != "accounting" and getattr(self.options, feature) == "closed":
            raise DependencyUnavailableError(
                f"The gateway cannot check {feature} right now (its store is unavailable); retry shortly.",
                retry_after=self.options.check_interval,
            )

    def refusing(self) -> list[str]:
        """Features on Redis that answer 503 now: empty while Redis is up."""
        return [] if self.up else [f for f in self.options.closed_features() if f in self.features]

    async def check(self) -> None:
        try:
            async with asyncio.timeout(self.options.command_timeout + self.options.connect_timeout):
                await self._redis.ping()
        except REDIS_ERRORS as exc:
            if self.up:
                self.up = False
                self._gauge.set(0)
                log.error("redis does not answer PING", extra={"error": repr(exc)})
            return
        if not self.up:
            log.warning("redis is up again")
        self.up = True
        self._gauge.set(1)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.options.check_interval)
            await self.check()
