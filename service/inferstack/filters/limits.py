"""Per-key rate limits: requests per minute, tokens per minute, concurrent requests.

RPM and TPM are token buckets that hold one minute's allowance and refill continuously (so a key
can burst its whole minute, then runs at the steady rate). A request is admitted only if *every*
limit has room, and then charged on all of them at once: check and charge are one atomic step (one
event-loop step here, one Lua script in ``limits_redis``), which is what keeps 100 concurrent
requests from all seeing the same remaining budget.

At admission a request reserves ``prompt estimate + max_tokens`` tokens; ``settle`` corrects the
bucket to the real usage and frees the concurrency slot. ``settle`` is idempotent, so calling it
from a ``finally`` can never release twice.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..clock import Clock, monotonic
from ..errors import RateLimitError
from .keys import KeyEntry

WINDOW = 60.0  # seconds: the "per minute" of RPM and TPM
Headers = list[tuple[bytes, bytes]]


class LimitExceeded(RateLimitError):
    """429 from a key's limits; ``limit`` is the metric label: rpm, tpm or concurrency."""

    def __init__(self, message: str, *, limit: str, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, retry_after=retry_after, **kwargs)
        self.limit = limit


@dataclass(slots=True)
class Reservation:
    """What one admitted request holds until ``settle``."""

    entry: KeyEntry
    tokens: int
    lease: str | None
    headers: Headers = field(default_factory=list)
    settled: bool = False


class Limiter(Protocol):
    async def acquire(self, entry: KeyEntry, tokens: int) -> Reservation:
        """Admit and charge, or raise ``LimitExceeded``."""
        ...

    async def settle(self, reservation: Reservation, used_tokens: int | None) -> None:
        """Correct TPM to ``used_tokens`` (None: unknown, keep the reservation) and free the slot."""
        ...


def rejection(
    entry: KeyEntry, limit: str, wait: float, tokens: int, requests_left: float, tokens_left: float
) -> LimitExceeded:
    """The 429 for a failed check, with the ``x-ratelimit-*`` headers. ``wait``: seconds until it would fit."""
    err = _rejection(entry, limit, wait, tokens)
    for name, value in rate_headers(entry, requests_left, tokens_left):
        err.headers[name.decode()] = value.decode()
    return err


def _rejection(entry: KeyEntry, limit: str, wait: float, tokens: int) -> LimitExceeded:
    if limit == "rpm":
        msg = f"Rate limit reached: {entry.rpm} requests per minute."
    elif limit == "tpm":
        msg = f"Rate limit reached: {entry.tpm} tokens per minute; this request needs {tokens}."
    elif limit == "tpm_too_large":
        # Never fits: saying "retry later" would be a lie, but 429 is what OpenAI returns here.
        return LimitExceeded(
            f"Request too large: it needs {tokens} tokens, the limit is {entry.tpm} tokens per minute."
            " Lower max_tokens or the prompt.",
            limit="tpm",
            retry_after=WINDOW,
            code="request_too_large",
        )
    else:
        msg = f"Too many concurrent requests: the limit is {entry.max_concurrency}."
    return LimitExceeded(msg, limit=limit, retry_after=wait)


def rate_headers(entry: KeyEntry, requests_left: float, tokens_left: float) -> Headers:
    """OpenAI's ``x-ratelimit-*`` response headers; reset = time until the bucket is full again."""
    headers: Headers = []
    if entry.rpm is not None:
        headers += [
            (b"x-ratelimit-limit-requests", str(entry.rpm).encode()),
            (b"x-ratelimit-remaining-requests", str(max(0, math.floor(requests_left))).encode()),
            (b"x-ratelimit-reset-requests", duration((entry.rpm - requests_left) * WINDOW / entry.rpm).encode()),
        ]
    if entry.tpm is not None:
        headers += [
            (b"x-ratelimit-limit-tokens", str(entry.tpm).encode()),
            (b"x-ratelimit-remaining-tokens", str(max(0, math.floor(tokens_left))).encode()),
            (b"x-ratelimit-reset-tokens", duration((entry.tpm - tokens_left) * WINDOW / entry.tpm).encode()),
        ]
    return headers


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3g}s" if rest < 10 else f"{rest:.0f}s"
    return f"{int(minutes)}m{text}" if minutes else text


class _Bucket:
    __slots__ = ("level", "stamp")

    def __init__(self, level: float, stamp: float) -> None:
        self.level = level
        self.stamp = stamp

    def refill(self, capacity: int, now: float) -> float:
        self.level = min(capacity, self.level + (now - self.stamp) * capacity / WINDOW)
        self.stamp = now
        return self.level


class MemoryLimiter:
    """One gateway process. Atomic because check-and-charge contains no ``await``."""

    def __init__(self, clock: Clock = monotonic) -> None:
        self._clock = clock
        self._requests: dict[str, _Bucket] = {}
        self._tokens: dict[str, _Bucket] = {}
        self._active: dict[str, int] = {}

    def _bucket(self, table: dict[str, _Bucket], key: str, capacity: int, now: float) -> _Bucket:
        bucket = table.get(key)
        if bucket is None:
            bucket = table[key] = _Bucket(float(capacity), now)
        bucket.refill(capacity, now)
        return bucket

    async def acquire(self, entry: KeyEntry, tokens: int) -> Reservation:
        now = self._clock()
        key = entry.key_sha256
        rb = self._bucket(self._requests, key, entry.rpm, now) if entry.rpm is not None else None
        tb = self._bucket(self._tokens, key, entry.tpm, now) if entry.tpm is not None else None
        levels = (rb.level if rb else 0.0, tb.level if tb else 0.0)
        if entry.rpm is not None and rb is not None and rb.level < 1:
            raise rejection(entry, "rpm", (1 - rb.level) * WINDOW / entry.rpm, tokens, *levels)
        if entry.tpm is not None and tb is not None:
            if tokens > entry.tpm:
                raise rejection(entry, "tpm_too_large", 0, tokens, *levels)
            if tb.level < tokens:
                raise rejection(entry, "tpm", (tokens - tb.level) * WINDOW / entry.tpm, tokens, *levels)
        if entry.max_concurrency is not None and self._active.get(key, 0) >= entry.max_concurrency:
            raise rejection(entry, "concurrency", 1.0, tokens, *levels)
        # Every check passed: charge all of them (no await between the checks and here).
        if rb is not None:
            rb.level -= 1
        if tb is not None:
            tb.level -= tokens
        lease = None
        if entry.max_concurrency is not None:
            self._active[key] = self._active.get(key, 0) + 1
            lease = key
        return Reservation(entry, tokens, lease, rate_headers(entry, rb.level if rb else 0, tb.level if tb else 0))

    async def settle(self, reservation: Reservation, used_tokens: int | None) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        entry = reservation.entry
        key = entry.key_sha256
        if entry.tpm is not None and used_tokens is not None and used_tokens != reservation.tokens:
            bucket = self._bucket(self._tokens, key, entry.tpm, self._clock())
            # May go below zero when a request used more than it reserved: the debt delays the next ones.
            bucket.level = min(entry.tpm, bucket.level + reservation.tokens - used_tokens)
        if reservation.lease is not None:
            left = self._active.get(key, 0) - 1
            if left > 0:
                self._active[key] = left
            else:
                self._active.pop(key, None)

    def active(self, entry: KeyEntry) -> int:
        return self._active.get(entry.key_sha256, 0)


def new_lease() -> str:
    return uuid.uuid4().hex
