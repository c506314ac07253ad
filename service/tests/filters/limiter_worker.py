"""One "gateway process" for the two-process exactness test: N concurrent admissions on a shared Redis.

    python limiter_worker.py REDIS_URL REQUESTS TOKENS TPM NOW

Prints ``ready``, waits for a line on stdin (so both processes start together), fires REQUESTS
concurrent ``acquire`` calls of TOKENS tokens each at the frozen time NOW (seconds), and prints how
many were admitted as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys

import redis.asyncio

from inferstack.filters.keys import KeyEntry
from inferstack.filters.limits import LimitExceeded
from inferstack.filters.limits_redis import RedisLimiter


async def main(url: str, requests: int, tokens: int, tpm: int, now: float) -> None:
    client = redis.asyncio.Redis.from_url(url, max_connections=requests)
    limiter = RedisLimiter(client, lease_ttl=60, clock=lambda: now)
    entry = KeyEntry(key_sha256="a" * 64, tenant="shared", tpm=tpm)
    await client.ping()
    # Open the connections first, so the race below is between admissions, not connects.
    await asyncio.gather(*(client.ping() for _ in range(requests)))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def one() -> int:
        try:
            await limiter.acquire(entry, tokens)
            return 1
        except LimitExceeded:
            return 0

    admitted = sum(await asyncio.gather(*(one() for _ in range(requests))))
    print(json.dumps({"admitted": admitted}), flush=True)
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
