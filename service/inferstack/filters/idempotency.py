"""``Idempotency-Key``: a retried POST gets the first answer instead of a second generation.

A record per (tenant, key) holds the SHA-256 of the request body and, once the first request has
finished, its answer. The first request claims the key atomically (set-if-absent); a retry with the
same body waits for the answer and replays it; the same key with another body is 422. A first
request that fails releases the key, so the retry generates. The claim expires after ``pending_ttl``
so a gateway that died mid-request blocks the key only that long.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConflictError, InvalidRequestError
from .cache_store import Store

PENDING, DONE = b"P", b"D"
MAX_KEY_LENGTH = 255
POLL = 0.05  # seconds between looks at a claim another request holds


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    scope: str
    record: str
    body_sha: bytes


class Idempotency:
    """``store_for(tenant)``: where that tenant's records live (one bounded store per tenant in
    memory, so one tenant cannot evict another's records; one shared Redis store)."""

    def __init__(self, store_for: Callable[[str], Store], *, ttl: float, pending_ttl: float, wait: float) -> None:
        self.stores = store_for
        self._ttl = ttl
        self._pending_ttl = pending_ttl
        self._wait = wait

    async def begin(self, scope: str, key: str, body: bytes) -> Replay | Claim:
        if not key or len(key) > MAX_KEY_LENGTH:
            raise InvalidRequestError(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.")
        record = hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()
        body_sha = hashlib.sha256(body).hexdigest().encode()
        store = self.stores(scope)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        while True:
            if await store.add(record, PENDING + body_sha, self._pending_ttl):
                return Claim(scope, record, body_sha)
            found = await store.get(record)
            if found is None:
                continue  # expired between the two calls: claim it now
            if found[1:65] != body_sha:
                raise ConflictError(
                    "This Idempotency-Key was already used with a different request body.", param="Idempotency-Key"
                )
            if found[:1] == DONE:
                return Replay(int(found[65:68]), found[68:])
            if loop.time() >= deadline:
                raise ConflictError(
                    "A request with this Idempotency-Key is still in progress; retry later.",
                    param="Idempotency-Key",
                    code="idempotency_key_in_use",
                )
            await asyncio.sleep(POLL)

    async def complete(self, claim: Claim, status: int, body: bytes) -> None:
        await self.stores(claim.scope).set(claim.record, DONE + claim.body_sha + b"%03d" % status + body, self._ttl)

    async def abandon(self, claim: Claim) -> None:
        await self.stores(claim.scope).delete(claim.record)
