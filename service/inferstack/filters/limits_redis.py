"""The same limits shared by every gateway replica through Redis.

Check-and-charge is one Lua script, so it is atomic across replicas; the clock is Redis's own
(``TIME``), so replicas with skewed clocks still agree. Keys carry the tenant as a hash tag
(``{acme}``) so one script's keys sit in one slot on Redis Cluster too. Concurrency slots are
leases in a sorted set scored by expiry: a replica that dies mid-request frees its slots after
``lease_ttl`` instead of holding them forever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .keys import KeyEntry
from .limits import WINDOW, Reservation, new_lease, rate_headers, rejection

# ARGV[8], when not empty, is the time in ms from the caller's clock (tests freeze it); else Redis's TIME.
_COMMON = """
local now = tonumber(ARGV[8])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local window = tonumber(ARGV[7])
local function level(key, cap)
  local v = redis.call('HMGET', key, 'l', 't')
  local l = tonumber(v[1])
  if l == nil then return cap end
  l = l + (now - tonumber(v[2])) * cap / window
  if l > cap then return cap end
  return l
end
local function store(key, l)
  redis.call('HSET', key, 'l', string.format('%.6f', l), 't', now)
  redis.call('PEXPIRE', key, window * 2)
end
"""

# KEYS: requests bucket, tokens bucket, leases. ARGV: rpm, tpm, max_concurrency (0 = none), tokens,
# lease id, lease ttl ms, window ms, now ms ('' = Redis TIME). Returns {'ok', requests left, tokens left}
# or {verdict, wait ms, requests left, tokens left}, as strings (Lua numbers would be truncated).
ACQUIRE = (
    _COMMON
    + """
local rpm, tpm, maxc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local rl, tl = 0, 0
if rpm > 0 then rl = level(KEYS[1], rpm) end
if tpm > 0 then tl = level(KEYS[2], tpm) end
-- Rejections carry both levels too: a 429 has x-ratelimit-* headers like any other answer.
local function reject(verdict, wait) return {verdict, tostring(wait), tostring(rl), tostring(tl)} end
if rpm > 0 and rl < 1 then return reject('rpm', (1 - rl) * window / rpm) end
if tpm > 0 then
  if cost > tpm then return reject('tpm_too_large', 0) end
  if tl < cost then return reject('tpm', (cost - tl) * window / tpm) end
end
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= maxc then return reject('concurrency', 1000) end
end
if rpm > 0 then rl = rl - 1; store(KEYS[1], rl) end
if tpm > 0 then tl = tl - cost; store(KEYS[2], tl) end
if maxc > 0 then
  local ttl = tonumber(ARGV[6])
  redis.call('ZADD', KEYS[3], now + ttl, ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return {'ok', tostring(rl), tostring(tl)}
"""
)

# KEYS: tokens bucket, leases. ARGV: tpm (0 = none), refund (may be negative), lease id ('' = none),
# unused, unused, unused, window ms, now ms.
SETTLE = (
    _COMMON
    + """
local tpm, refund = tonumber(ARGV[1]), tonumber(ARGV[2])
if tpm > 0 and refund ~= 0 then
  local l = level(KEYS[2], tpm) + refund
  if l > tpm then l = tpm end
  store(KEYS[2], l)
end
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[3], ARGV[3]) end
return 1
"""
)


def limit_keys(entry: KeyEntry, prefix: str) -> list[str]:
    base = f"{prefix}{{{entry.tenant}}}:rl:{entry.key_id}"
    return [base + ":r", base + ":t", base + ":c"]


class RedisLimiter:
    def __init__(
        self,
        redis: Any,
        *,
        lease_ttl: float,
        prefix: str = "inferstack:",
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` (seconds) replaces Redis's own ``TIME``: for tests only, since replicas must share one clock."""
        self._acquire = redis.register_script(ACQUIRE)
        self._settle = redis.register_script(SETTLE)
        self._lease_ms = int(lease_ttl * 1000)
        self._prefix = prefix
        self._clock = clock

    def _now_ms(self) -> str:
        return "" if self._clock is None else str(int(self._clock() * 1000))

    async def acquire(self, entry: KeyEntry, tokens: int) -> Reservation:
        lease = new_lease() if entry.max_concurrency is not None else ""
        args = [
            entry.rpm or 0,
            entry.tpm or 0,
            entry.max_concurrency or 0,
            tokens,
            lease,
            self._lease_ms,
            int(WINDOW * 1000),
            self._now_ms(),
        ]
        verdict, *values = await self._acquire(keys=limit_keys(entry, self._prefix), args=args)
        verdict = verdict.decode() if isinstance(verdict, bytes) else verdict
        if verdict != "ok":
            raise rejection(entry, verdict, float(values[0]) / 1000, tokens, float(values[1]), float(values[2]))
        return Reservation(entry, tokens, lease or None, rate_headers(entry, float(values[0]), float(values[1])))

    async def settle(self, reservation: Reservation, used_tokens: int | None) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        entry = reservation.entry
        refund = 0 if used_tokens is None or entry.tpm is None else reservation.tokens - used_tokens
        if refund == 0 and reservation.lease is None:
            return
        args = [entry.tpm or 0, refund, reservation.lease or "", 0, 0, 0, int(WINDOW * 1000), self._now_ms()]
        await self._settle(keys=limit_keys(entry, self._prefix), args=args)
