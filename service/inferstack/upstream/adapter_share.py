"""Every gateway's adapter sends per replica, shared through Redis: the placement record across pods.

vLLM keeps a replica's adapters in an LRU cache and does not say over HTTP which ones are in it
(docs/adapters.md). What decides it is the order of the requests the replica got, from every gateway.
Each gateway writes, per replica, when it last sent each adapter there, and reads back everyone's:

- one sorted set per replica, ``inferstack:adapters:{use}:<replica URL>``: member = the adapter's
  served name, score = the last send in milliseconds of Redis's own clock (``TIME``, minus how long
  the send waited in this gateway's buffer), so pods' clocks need not agree;
- bounded: at most ``KEEP`` adapters per replica (the most recently used; slots are fewer), and the
  key expires ``share_ttl`` after its last write (replicas that left); read bounded too (the ``KEEP``
  most recent, names no longer than a model name), whatever another writer left in the set;
- every ``share_interval``: one script writes the sends since the last exchange, one pipeline reads
  every known replica's set; ``AdapterPlacement.observe_shared`` takes the order (plus this gateway's
  sends after the read).

Fail open: while Redis is down (``RedisHealth``) nothing is exchanged, each gateway routes on its own
record, and ``inferstack_dependency_errors_total{dependency="redis",feature="adapters"}`` counts every
exchange skipped or failed. Sends noted meanwhile are kept (the latest per replica and adapter, at most
``BUFFER``) and written once Redis is back. A Redis that answers with an error (a key of another type
under our prefix) is not down: the exchange is counted and logged, and Redis stays up for the features
that fail closed. Whatever else goes wrong in an exchange is logged and counted too: the loop goes on
(a dead loop would leave every gateway on its own record, silently).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from redis.exceptions import ResponseError

from ..bounds import MAX_MODEL_LENGTH
from ..clock import monotonic
from ..config import Adapters as AdapterSettings
from ..filters.dependency import REDIS_ERRORS, RedisHealth
from .adapters import AdapterPlacement

log = logging.getLogger("inferstack.upstream")

PREFIX = "inferstack:adapters:{use}:"
"""One hash tag for every key: the write script touches several, which Redis Cluster wants in one slot."""
KEEP = 32
"""Adapters kept per replica: more than any engine's slots."""
BUFFER = 4096
"""Sends (replica, adapter) kept while Redis cannot take them: the newest win."""
FEATURE = "adapters"

# KEYS: the replicas' sets. ARGV: ttl ms, keep, then (key index, member, age ms) per send.
_WRITE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 3, #ARGV, 3 do
  redis.call('ZADD', KEYS[tonumber(ARGV[i])], 'GT', now - tonumber(ARGV[i + 2]), ARGV[i + 1])
end
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYRANK', key, 0, -keep - 1)
  redis.call('PEXPIRE', key, ttl)
end
return now
"""


def key_of(url: str) -> str:
    return PREFIX + url


class SharedUse:
    """The lifespan's: feeds on ``placement.on_use``, exchanges with Redis in ``run``."""

    def __init__(self, redis: Any, health: RedisHealth, placement: AdapterPlacement, settings: AdapterSettings) -> None:
        self._redis = redis
        self._health = health
        self._placement = placement
        self._interval = settings.share_interval
        self._ttl_ms = int(settings.share_ttl * 1000)
        self._write = redis.register_script(_WRITE)
        self._pending: OrderedDict[tuple[str, str], float] = OrderedDict()
        """(replica, adapter) -> monotonic time of its last send not yet written, oldest first."""
        self._failing = False
        """An exchange failed (not for Redis being down) and none has succeeded since: logged once."""
        placement.on_use = self.note

    def note(self, url: str, adapter: str) -> None:
        pending = self._pending
        pending[(url, adapter)] = monotonic()
        pending.move_to_end((url, adapter))
        if len(pending) > BUFFER:
            pending.popitem(last=False)

    async def exchange(self) -> bool:
        """Write the pending sends, read every known replica's set, hand it to the placement. False
        when Redis could not take part (skipped while it is down, or the call failed): counted."""
        health = self._health
        if not health.up:
            health.count(FEATURE)
            return False
        sending = list(self._pending.items())
        urls = list(self._placement.replicas)
        try:
            if sending:
                now = monotonic()
                keys = list(dict.fromkeys(key_of(url) for (url, _), _ in sending))
                index = {k: i + 1 for i, k in enumerate(keys)}
                args: list[Any] = [self._ttl_ms, KEEP]
                for (url, adapter), at in sending:
                    args += [index[key_of(url)], adapter, int((now - at) * 1000)]
                await self._write(keys=keys, args=args)
            pipe = self._redis.pipeline(transaction=False)
            for url in urls:
                # The KEEP most recent only: the set is shared, and another writer need not trim it.
                pipe.zrange(key_of(url), -KEEP, -1)
            found = await pipe.execute()
        except ResponseError as exc:  # Redis answered: our data is wrong, not Redis down
            self._failed("shared adapter record: redis refused the exchange", exc)
            return False
        except REDIS_ERRORS as exc:
            health.mark_down(FEATURE, exc)
            health.count(FEATURE)
            return False
        self._failing = False
        for item in sending:  # written: unless sent again meanwhile (then its newer time waits)
            if self._pending.get(item[0]) == item[1]:
                del self._pending[item[0]]
        for url, members in zip(urls, found, strict=True):
            if url not in self._placement.replicas:
                continue  # left while we waited
            # Another writer's bytes need not be UTF-8: a replaced character names no adapter. Nor
            # does a member longer than a model name may be (no request could ask for it).
            names = (m.decode(errors="replace") if isinstance(m, bytes) else str(m) for m in members)
            order = [name for name in names if len(name) <= MAX_MODEL_LENGTH]
            since = [adapter for (u, adapter) in self._pending if u == url]
            self._placement.observe_shared(url, order, since)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.exchange()
            except Exception as exc:  # a bug or bad data in one exchange must not end sharing
                self._failed("shared adapter record: exchange failed", exc)

    def _failed(self, message: str, exc: BaseException) -> None:
        """Counted every time; logged once per run of failures (every interval would flood the log)."""
        self._health.count(FEATURE)
        if not self._failing:
            self._failing = True
            log.error(message, exc_info=exc)
