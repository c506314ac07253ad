"""How often a cancel is lost by a health loop against a peer that never answers, and what ``stop`` does.

    .venv/bin/python bench/lost_cancel.py [--loop redis|cluster] [--trials 300] [--out F]

The peer is a TCP server that reads everything and answers nothing. ``--loop redis``: the gateway's
own Redis client and health check (``redis_client``, ``RedisHealth.run``: a PING under
``asyncio.timeout``, redis-py's connect and read under timeouts of their own). ``--loop cluster``:
the cluster's health checker of one replica (``Cluster._check_loop``: aiohttp under the health
timeout). Each checks every 10 ms here so the cancel meets a timeout often, with 0.2 s timeouts.
Each trial starts the loop, cancels it at a random moment 150-250 ms in (where a 0.2 s timeout
expires), then:

- ``cancel``: waits up to 2 s for the task to end, as ``cancel`` + ``gather`` did (forever there);
- ``stop``: calls ``inferstack.tasks.stop`` (cancel again every 0.25 s, 2 s at most).

``lost`` counts tasks still running 2 s after the cancel. Session 12's CI hang (a lifespan's exit
waiting in ``gather`` for 90 minutes) was one of these.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "service"), str(HERE)]

import aiohttp  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from results_file import emit  # noqa: E402

from inferstack.config import RedisSettings, Settings  # noqa: E402
from inferstack.filters.dependency import DependencyMetrics, RedisHealth, redis_client  # noqa: E402
from inferstack.metrics.gateway import GatewayMetrics  # noqa: E402
from inferstack.tasks import stop  # noqa: E402
from inferstack.upstream.cluster import Cluster  # noqa: E402
from inferstack.upstream.endpoint import Endpoint  # noqa: E402


@asynccontextmanager
async def silent_peer() -> AsyncIterator[tuple[str, int]]:
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield "127.0.0.1", server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()


async def trial(task: asyncio.Task[None], how: str) -> tuple[bool, float]:
    """(lost, seconds from the cancel to the task's end or to giving up)."""
    await asyncio.sleep(random.uniform(0.15, 0.25))
    started = time.monotonic()
    if how == "cancel":
        task.cancel()
        await asyncio.wait([task], timeout=2.0)
        lost = not task.done()
    else:
        lost = bool(await stop([task], within=2.0))
    took = time.monotonic() - started
    while await stop([task]):  # a lost one: end it before the next trial (it is counted already)
        pass
    return lost, took


async def redis_trial(host: str, port: int, how: str) -> tuple[bool, float]:
    options = RedisSettings(connect_timeout=0.2, command_timeout=0.2, check_interval=0.01)
    redis = redis_client(f"redis://{host}:{port}/0", options)
    health = RedisHealth(redis, options, DependencyMetrics(CollectorRegistry()), frozenset({"limits"}))
    try:
        return await trial(asyncio.create_task(health.run(), name="redis health"), how)
    finally:
        await redis.aclose()


async def cluster_trial(host: str, port: int, how: str, session: aiohttp.ClientSession) -> tuple[bool, float]:
    cluster = Cluster(Settings(upstreams=[], health={"interval": 0.01, "timeout": 0.2}), session, GatewayMetrics())
    url = f"http://{host}:{port}"
    endpoint = cluster.endpoints[url] = Endpoint(url)  # a member: its checker runs until cancelled
    return await trial(asyncio.create_task(cluster._check_loop(endpoint), name=f"health {url}"), how)


async def main(loop: str, trials: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "python": sys.version.split()[0],
        "loop": loop,
        "trials": trials,
        "command": f".venv/bin/python bench/lost_cancel.py --loop {loop} --trials {trials}",
    }
    async with silent_peer() as (host, port), aiohttp.ClientSession() as session:
        for how in ("cancel", "stop"):
            if loop == "redis":
                outcomes = [await redis_trial(host, port, how) for _ in range(trials)]
            else:
                outcomes = [await cluster_trial(host, port, how, session) for _ in range(trials)]
            times = sorted(took for _, took in outcomes)
            result[how] = {
                "lost": sum(lost for lost, _ in outcomes),
                "ended_after_a_second_cancel": sum(not lost and took >= 0.25 for lost, took in outcomes),
                "median_ms": round(times[len(times) // 2] * 1000, 2),
                "max_ms": round(times[-1] * 1000, 1),
            }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loop", choices=("redis", "cluster"), default="redis")
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.disable(logging.ERROR)  # "redis does not answer PING", "replica unhealthy": every trial
    emit(asyncio.run(main(args.loop, args.trials)), args.out)
