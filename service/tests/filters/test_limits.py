"""Rate limits, in memory and on a real Redis: the same behaviour, and exact under concurrency."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from inferstack.filters.keys import KeyEntry
from inferstack.filters.limits import Limiter, LimitExceeded, MemoryLimiter, duration
from inferstack.filters.limits_redis import RedisLimiter

HERE = Path(__file__).parent
SERVICE = HERE.parents[1]


def entry(**limits: Any) -> KeyEntry:
    return KeyEntry(key_sha256="b" * 64, tenant="acme", **limits)


class FrozenClock:
    """Time stands still unless a test moves it: header values and refills are exact, not wall-clock."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, redis_client: Any, clock: FrozenClock) -> AsyncIterator[Limiter]:
    if request.param == "memory":
        yield MemoryLimiter(clock=clock)
    else:
        yield RedisLimiter(redis_client, lease_ttl=60, clock=clock)


def headers_of(pairs: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in pairs}


async def test_rpm_rejects_with_retry_after_and_openai_headers(limiter: Limiter) -> None:
    key = entry(rpm=2, tpm=1000)
    first = await limiter.acquire(key, 100)
    h = headers_of(first.headers)
    assert h["x-ratelimit-limit-requests"] == "2"
    assert h["x-ratelimit-remaining-requests"] == "1"
    assert h["x-ratelimit-limit-tokens"] == "1000"
    assert h["x-ratelimit-remaining-tokens"] == "900"
    assert h["x-ratelimit-reset-requests"] == "30s"  # one request refills in 30 s at 2 per minute
    assert h["x-ratelimit-reset-tokens"] == "6s"  # 100 tokens at 1000 per minute
    await limiter.acquire(key, 100)
    with pytest.raises(LimitExceeded) as caught:
        await limiter.acquire(key, 100)
    assert caught.value.status == 429 and caught.value.limit == "rpm"
    # One request comes back after 30 s at 2 per minute.
    assert caught.value.retry_after == pytest.approx(30.0)
    assert caught.value.headers["Retry-After"] == "30"
    assert caught.value.headers["x-ratelimit-reset-requests"] == "1m0s"
    # The 429 carries the same x-ratelimit-* headers as an admitted answer.
    assert caught.value.headers["x-ratelimit-remaining-requests"] == "0"
    assert caught.value.headers["x-ratelimit-remaining-tokens"] == "800"


async def test_rejection_charges_nothing(limiter: Limiter) -> None:
    key = entry(rpm=10, tpm=1000)
    await limiter.acquire(key, 900)
    with pytest.raises(LimitExceeded) as caught:
        await limiter.acquire(key, 200)
    assert caught.value.limit == "tpm"
    # The failed TPM check did not consume a request from the RPM bucket.
    ok = await limiter.acquire(key, 50)
    assert headers_of(ok.headers)["x-ratelimit-remaining-requests"] == "8"


async def test_settle_corrects_tokens_to_actual_usage(limiter: Limiter) -> None:
    key = entry(tpm=1000)
    held = await limiter.acquire(key, 800)
    with pytest.raises(LimitExceeded):
        await limiter.acquire(key, 300)
    await limiter.settle(held, 100)  # used 100 of the 800 reserved
    await limiter.settle(held, 100)  # a second settle changes nothing
    after = await limiter.acquire(key, 300)
    assert headers_of(after.headers)["x-ratelimit-remaining-tokens"] == "600"  # 1000 - 100 - 300


async def test_request_larger_than_tpm_is_never_admitted(limiter: Limiter) -> None:
    with pytest.raises(LimitExceeded) as caught:
        await limiter.acquire(entry(tpm=100), 101)
    assert caught.value.code == "request_too_large"


async def test_concurrency_slots_are_released_exactly_once(limiter: Limiter) -> None:
    key = entry(max_concurrency=2)
    a = await limiter.acquire(key, 1)
    b = await limiter.acquire(key, 1)
    with pytest.raises(LimitExceeded) as caught:
        await limiter.acquire(key, 1)
    assert caught.value.limit == "concurrency"
    await limiter.settle(a, None)
    await limiter.settle(a, None)  # released twice: still only one slot back
    c = await limiter.acquire(key, 1)
    with pytest.raises(LimitExceeded):
        await limiter.acquire(key, 1)
    for r in (b, c):
        await limiter.settle(r, 1)
    await limiter.acquire(key, 1)


async def test_buckets_refill_continuously(limiter: Limiter, clock: FrozenClock) -> None:
    key = entry(tpm=600)
    await limiter.acquire(key, 600)
    with pytest.raises(LimitExceeded) as caught:
        await limiter.acquire(key, 100)
    assert caught.value.retry_after == pytest.approx(10.0)  # 600/min = 10 tokens/s
    clock.now += 9.9
    with pytest.raises(LimitExceeded):
        await limiter.acquire(key, 100)
    clock.now += 0.1
    admitted = await limiter.acquire(key, 100)
    assert headers_of(admitted.headers)["x-ratelimit-remaining-tokens"] == "0"


async def test_expired_redis_leases_free_their_slots(redis_client: Any) -> None:
    """A gateway that died mid-request: its slot comes back after lease_ttl."""
    limiter = RedisLimiter(redis_client, lease_ttl=0.2)
    key = entry(max_concurrency=1)
    await limiter.acquire(key, 1)  # never settled
    with pytest.raises(LimitExceeded):
        await limiter.acquire(key, 1)
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        try:
            await limiter.acquire(key, 1)
            break
        except LimitExceeded:
            assert asyncio.get_running_loop().time() < deadline, "lease never expired"
            await asyncio.sleep(0.05)


def test_duration_format() -> None:
    assert duration(0.02) == "20ms"
    assert duration(1.5) == "1.5s"
    assert duration(360) == "6m0s"


# -- exactness under concurrency ----------------------------------------------------------------
TPM, COST, N = 1000, 100, 100


async def race(limiter: Limiter) -> int:
    key = entry(tpm=TPM)

    async def one() -> int:
        await asyncio.sleep(0)  # every request is in flight before any is admitted
        try:
            await limiter.acquire(key, COST)
            return COST
        except LimitExceeded:
            return 0

    return sum(await asyncio.gather(*(one() for _ in range(N))))


async def test_100_concurrent_requests_admit_exactly_the_limit(limiter: Limiter) -> None:
    # The clock is frozen: no refill during the race, so exactly TPM / COST requests fit.
    assert await race(limiter) == TPM


async def test_100_concurrent_requests_from_two_processes_sharing_redis(redis_url: str) -> None:
    # Both processes read one frozen time (argv), so nothing refills during the race.
    argv = [sys.executable, str(HERE / "limiter_worker.py"), redis_url, str(N // 2), str(COST), str(TPM), "1000000"]
    env = {"PYTHONPATH": str(SERVICE), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        counts = [json.loads(p.communicate(timeout=30)[0])["admitted"] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    # Each process alone would admit the whole limit (2x in total) if the state were not shared.
    assert sum(counts) * COST == TPM, counts
