"""Which HTTP client for the upstream side: aiohttp or httpx, under the gateway's load shape.

    .venv/bin/python bench/http_client_bench.py [--seconds 10] [--out bench/results/http_client.json]

Each client, in this process pinned to core 0 on uvloop, keeps 32 streams open against the fake engine
(pinned to core 1; 32 tokens, 5 ms apart), reading every chunk as it arrives as the relay does. It
prints, per client: streams/s, this process's CPU milliseconds per stream (``time.process_time``), and
the time to the first chunk (p50/p99). The gateway uses the cheaper one (aiohttp, see
upstream/client.py); this file is how that choice was made and can be re-checked.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "service"))

from results_file import emit  # noqa: E402

from inferstack.upstream.client import Pool  # noqa: E402
from inferstack_devstack import Stack, free_port, signals_stop  # noqa: E402

BODY = {
    "model": "fake-model",
    "stream": True,
    "messages": [{"role": "user", "content": "Say something."}],
}
CONCURRENCY = 32

OneStream = Callable[[], Awaitable[float]]


async def run_client(make: Callable[[], Any], one: Callable[[Any], OneStream], seconds: float) -> dict[str, float]:
    client = make()
    async with client:
        stream = one(client)
        await asyncio.gather(*(stream() for _ in range(CONCURRENCY)))  # warm the pool
        firsts: list[float] = []
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                firsts.append(await stream())

        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    firsts.sort()
    return {
        "streams_per_s": round(len(firsts) / wall, 1),
        "cpu_ms_per_stream": round(cpu / len(firsts) * 1e3, 3),
        "first_chunk_ms_p50": round(firsts[len(firsts) // 2] * 1e3, 2),
        "first_chunk_ms_p99": round(firsts[min(len(firsts) - 1, int(len(firsts) * 0.99))] * 1e3, 2),
    }


def aiohttp_stream(url: str) -> Callable[[aiohttp.ClientSession], OneStream]:
    def bind(session: aiohttp.ClientSession) -> OneStream:
        async def one() -> float:
            started = time.perf_counter()
            first = -1.0
            async with session.post(url, json=BODY) as resp:
                while await resp.content.readany():
                    if first < 0:
                        first = time.perf_counter() - started
            return first

        return one

    return bind


def lean_stream(url: str) -> Callable[[LeanClient], OneStream]:
    base, _, path = url.partition("/v1/")
    body = orjson.dumps(BODY)

    def bind(client: LeanClient) -> OneStream:
        async def one() -> float:
            started = time.perf_counter()
            first = -1.0
            resp = await client.pool.post(base, "/v1/" + path, body, {"content-type": "application/json"})
            try:
                while await resp.readany():
                    if first < 0:
                        first = time.perf_counter() - started
            finally:
                resp.close()
            return first

        return one

    return bind


class LeanClient:
    """The gateway's own client (inferstack/upstream/client.py) as an async context manager."""

    def __init__(self) -> None:
        self.pool = Pool(connect_timeout=5.0)

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.close()


def httpx_stream(url: str) -> Callable[[httpx.AsyncClient], OneStream]:
    def bind(client: httpx.AsyncClient) -> OneStream:
        async def one() -> float:
            started = time.perf_counter()
            first = -1.0
            async with client.stream("POST", url, json=BODY) as resp:
                async for _chunk in resp.aiter_raw():
                    if first < 0:
                        first = time.perf_counter() - started
            return first

        return one

    return bind


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if os.cpu_count() and os.cpu_count() >= 2:  # type: ignore[operator]
        os.sched_setaffinity(0, {0})
    stack = Stack(run_dir=REPO / ".cache" / "bench")
    try:
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "inferstack_fake_engine",
            "--port",
            str(port),
            "--itl",
            "0.005",
            "--output-tokens",
            "32",
        ]
        engine = stack.start("fake-engine-clients", ["taskset", "-c", "1", *argv], f"http://127.0.0.1:{port}")
        stack.wait_ready(engine, "/health", 30)
        url = engine.url + "/v1/chat/completions"
        results = {
            "aiohttp": uvloop.run(
                run_client(
                    lambda: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)),
                    aiohttp_stream(url),
                    args.seconds,
                )
            ),
            "lean": uvloop.run(run_client(LeanClient, lean_stream(url), args.seconds)),
            "httpx": uvloop.run(
                run_client(
                    lambda: httpx.AsyncClient(
                        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64), timeout=30
                    ),
                    httpx_stream(url),
                    args.seconds,
                )
            ),
        }
    finally:
        stack.stop()
    result = {
        "command": "make bench  # .venv/bin/python bench/http_client_bench.py " + shlex.join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "aiohttp": aiohttp.__version__,
            "httpx": httpx.__version__,
        },
        "load": {"concurrent_streams": CONCURRENCY, "tokens": 32, "itl_s": 0.005},
        **results,
        "httpx_cpu_per_stream_over_aiohttp": round(
            results["httpx"]["cpu_ms_per_stream"] / results["aiohttp"]["cpu_ms_per_stream"], 2
        ),
        "lean_cpu_per_stream_over_aiohttp": round(
            results["lean"]["cpu_ms_per_stream"] / results["aiohttp"]["cpu_ms_per_stream"], 2
        ),
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    with signals_stop():  # SIGTERM stops the children too
        sys.exit(main())
