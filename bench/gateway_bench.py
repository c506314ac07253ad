"""Gateway overhead against the direct path, on the fake engine, in one run (``make bench``).

    .venv/bin/python bench/gateway_bench.py [--seconds 15] [--out bench/results/gateway.json]

Layout on a 2-core machine: the gateway pinned to core 0 (one core for the proxy, as in the target),
the fake engine and this load generator on core 1. Each phase runs the same load twice, straight at
the fake engine ("direct") and through the gateway, and reports:

- added TTFT p50/p99 (gateway quantile minus direct quantile) at 32, 1 and 256 concurrent streams;
- requests/s at 64 concurrent non-stream requests, through the gateway and direct;
- gateway CPU milliseconds per request (utime + stime of the gateway process from /proc, over the
  phase, divided by the requests it served);
- the gateway's peak RSS.

Prints JSON (``--out`` also writes it), then on stderr a table of issue 13's targets: the median
over the runs, their range, the ratio to the target and whether it is met. About 2.5 min a run
(eight phases of ``--seconds`` plus warm-ups). Latency needs a quiet machine; CPU per request much
less so (bench/ab_bench.py compares versions by it on a busy one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shlex
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "service"))

import container  # noqa: E402
from results_file import emit  # noqa: E402

from inferstack_devstack import Service, Stack, free_port, signals_stop  # noqa: E402

TOKENS = 32
TTFT = 0.05
ITL = 0.01
CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "Say something."}]}


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pinned(core: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv] if os.cpu_count() and os.cpu_count() >= 2 else argv  # type: ignore[operator]


def start_fake_engine(stack: Stack) -> Service:
    """The fake engine on core 1 (with the load generator), ready."""
    port = free_port()
    argv = [sys.executable, "-m", "inferstack_fake_engine", "--port", str(port), "--model", "fake-model"]
    argv += ["--ttft", str(TTFT), "--itl", str(ITL), "--output-tokens", str(TOKENS)]
    engine = stack.start("fake-engine", pinned(1, argv), f"http://127.0.0.1:{port}")
    stack.wait_ready(engine, "/health", 30)
    return engine


def start_gateway(
    stack: Stack,
    engine_url: str,
    name: str = "gateway",
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    image: str | None = None,
) -> Service:
    """A gateway on core 0 in front of ``engine_url`` (``python -m inferstack serve`` unless ``argv``,
    or the container ``image``: bench/container.py), ready."""
    port, admin_port = free_port(), free_port()
    settings = {
        "INFERSTACK_HOST": "127.0.0.1",
        "INFERSTACK_PORT": str(port),
        # /metrics lives on the admin listener (Service.admin_url).
        "INFERSTACK_ADMIN_PORT": str(admin_port),
        "INFERSTACK_UPSTREAMS": engine_url,
        "INFERSTACK_AUTH_ENABLED": "false",
        "INFERSTACK_MAX_IN_FLIGHT_PER_REPLICA": "1024",
        **(env or {}),
    }
    if image is not None:
        command = container.run_argv(image, container.name_for(name), settings, 0)
        gateway = stack.start(name, command, f"http://127.0.0.1:{port}", container.ENV)
    else:
        command = pinned(0, argv if argv is not None else [sys.executable, "-m", "inferstack", "serve"])
        gateway = stack.start(name, command, f"http://127.0.0.1:{port}", settings)
    gateway.admin_url = f"http://127.0.0.1:{admin_port}"
    stack.wait_ready(gateway, "/readyz", 30 if image is None else 90)
    return gateway


@contextlib.contextmanager
def services() -> Iterator[tuple[str, str, int, str]]:
    stack = Stack(run_dir=REPO / ".cache" / "bench")
    try:
        engine = start_fake_engine(stack)
        gateway = start_gateway(stack, engine.url)
        yield engine.url, gateway.url, gateway.process.pid, gateway.admin_url
    finally:
        stack.stop()


async def one_stream(session: aiohttp.ClientSession, url: str, max_tokens: int | None = None) -> float:
    started = time.perf_counter()
    ttft = -1.0
    body = {**CHAT, "stream": True} if max_tokens is None else {**CHAT, "stream": True, "max_tokens": max_tokens}
    async with session.post(url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200, resp.status
        async for line in resp.content:
            if line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line:
                ttft = time.perf_counter() - started
                break
        # The rest in bulk: this load generator shares a core with the engine, so it parses no more
        # than it must (it would otherwise add noise to both paths' TTFT).
        rest = await resp.content.read()
        assert rest.endswith(b"data: [DONE]\n\n"), rest[-40:]
    return ttft


async def one_call(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(url + "/v1/chat/completions", json={**CHAT, "max_tokens": 4}) as resp:
        assert resp.status == 200, resp.status
        await resp.read()


async def closed_loop(
    url: str, concurrency: int, seconds: float, stream: bool, max_tokens: int | None = None
) -> tuple[list[float], int, float]:
    """``concurrency`` workers sending one request after another for ``seconds``: (TTFTs of the
    streams, requests served, elapsed). ``max_tokens`` shortens the streams (the engine's default: 32)."""
    connector = aiohttp.TCPConnector(limit=0)
    results: list[float] = []
    count = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm the connection pool so connection set-up is not measured.
        await asyncio.gather(*(one_call(session, url) for _ in range(concurrency)))
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                if stream:
                    results.append(await one_stream(session, url, max_tokens))
                else:
                    await one_call(session, url)
                count += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return results, count, elapsed


def gateway_ttft(url: str) -> tuple[float, float]:
    """(sum, count) of the gateway's own TTFT histogram: from its request start to its first send."""
    total = count = 0.0
    with urllib.request.urlopen(url + "/metrics") as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("inferstack_time_to_first_token_seconds_sum"):
                total += float(line.rsplit(" ", 1)[1])
            elif line.startswith("inferstack_time_to_first_token_seconds_count"):
                count += float(line.rsplit(" ", 1)[1])
    return total, count


def rss_peak_mib(pid: int) -> float:
    """The gateway's peak resident memory (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def added(direct: list[float], gateway: list[float], q: float) -> float:
    """Added TTFT at quantile ``q``, ms: the gateway path's quantile minus the direct path's."""
    return (quantile(gateway, q) - quantile(direct, q)) * 1e3


async def streams(engine: str, gateway: str, pid: int, concurrency: int, seconds: float) -> dict[str, Any]:
    """``concurrency`` closed-loop streams straight at the engine, then through the gateway."""
    direct_ttft, direct_streams, _ = await closed_loop(engine, concurrency, seconds, stream=True)
    cpu0 = cpu_seconds(pid)
    gw_ttft, gw_streams, _ = await closed_loop(gateway, concurrency, seconds, stream=True)
    cpu = cpu_seconds(pid) - cpu0
    return {
        "requests": gw_streams,
        "direct_streams": direct_streams,
        "direct_ttft_ms": {"p50": quantile(direct_ttft, 0.5) * 1e3, "p99": quantile(direct_ttft, 0.99) * 1e3},
        "gateway_ttft_ms": {"p50": quantile(gw_ttft, 0.5) * 1e3, "p99": quantile(gw_ttft, 0.99) * 1e3},
        "added_ttft_ms": {
            "p50": added(direct_ttft, gw_ttft, 0.5),
            "p99": added(direct_ttft, gw_ttft, 0.99),
            "mean": (statistics.fmean(gw_ttft) - statistics.fmean(direct_ttft)) * 1e3,
        },
        # closed_loop's warm-up requests (one per worker) also went through the gateway.
        "gateway_cpu_ms_per_request": cpu / (gw_streams + concurrency) * 1e3,
    }


async def measure(engine: str, gateway: str, pid: int, admin: str, seconds: float) -> dict[str, Any]:
    sum0, count0 = gateway_ttft(admin)
    streams_32 = await streams(engine, gateway, pid, 32, seconds)
    sum1, count1 = gateway_ttft(admin)
    # What the gateway itself measured (its histogram): the part of the added TTFT spent inside the
    # gateway process, the rest being the extra loopback hop and wake-ups.
    streams_32["gateway_internal_ttft_mean_ms"] = (sum1 - sum0) / (count1 - count0) * 1e3
    streams_1 = await streams(engine, gateway, pid, 1, seconds)
    streams_256 = await streams(engine, gateway, pid, 256, seconds)

    _, direct_calls, direct_elapsed = await closed_loop(engine, 64, seconds, stream=False)
    cpu0 = cpu_seconds(pid)
    _, gw_calls, gw_elapsed = await closed_loop(gateway, 64, seconds, stream=False)
    call_cpu = cpu_seconds(pid) - cpu0
    return {
        "streams_32": streams_32,
        "streams_1": streams_1,
        "streams_256": streams_256,
        "nonstream_64": {
            "direct_rps": direct_calls / direct_elapsed,
            "gateway_rps": gw_calls / gw_elapsed,
            "gateway_cpu_ms_per_request": call_cpu / (gw_calls + 64) * 1e3,
        },
        "rss_peak_mib": rss_peak_mib(pid),
    }


# Issue 13's targets: (what, where in a run, target, lower is better).
TARGETS: list[tuple[str, Callable[[dict[str, Any]], float], float]] = [
    ("cpu_ms_per_stream (32 tokens)", lambda r: r["streams_32"]["gateway_cpu_ms_per_request"], 1.5),
    ("cpu_ms_per_stream, stretch", lambda r: r["streams_32"]["gateway_cpu_ms_per_request"], 0.8),
    ("cpu_ms_per_call (non-stream)", lambda r: r["nonstream_64"]["gateway_cpu_ms_per_request"], 0.3),
    ("added_ttft_p50_ms at 32 streams", lambda r: r["streams_32"]["added_ttft_ms"]["p50"], 1.0),
    ("added_ttft_p99_ms at 256 streams", lambda r: r["streams_256"]["added_ttft_ms"]["p99"], 10.0),
    ("added_ttft_p99_ms at 1 stream", lambda r: r["streams_1"]["added_ttft_ms"]["p99"], 5.0),
    ("rss_peak_mib", lambda r: r["rss_peak_mib"], 150.0),
]


def verdicts(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target: the median over the runs, the range, the ratio to the target, met or not."""
    rows = []
    for name, get, target in TARGETS:
        values = [get(r) for r in runs]
        median = statistics.median(values)
        rows.append(
            {
                "what": name,
                "median": round(median, 3),
                "min": round(min(values), 3),
                "max": round(max(values), 3),
                "target": target,
                "ratio": round(median / target, 2),
                "met": median <= target,
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]], load: list[float]) -> None:
    out = sys.stderr
    print(f"\n{'target':34} {'median':>9} {'range':>19} {'target':>7} {'ratio':>6}  met", file=out)
    for r in rows:
        span = f"{r['min']:.3f}..{r['max']:.3f}"
        line = f"{r['what']:34} {r['median']:9.3f} {span:>19} {r['target']:7.2f} {r['ratio']:6.2f}  "
        print(line + ("yes" if r["met"] else "NO"), file=out)
    print(f"load average (1 min) during the runs: {min(load):.1f}..{max(load):.1f}", file=out)


def summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    def med(get: Callable[[dict[str, Any]], float]) -> float:
        return round(statistics.median(get(r) for r in runs), 3)

    return {
        "added_ttft_p50_ms": med(lambda r: r["streams_32"]["added_ttft_ms"]["p50"]),
        "added_ttft_p99_ms": med(lambda r: r["streams_32"]["added_ttft_ms"]["p99"]),
        "added_ttft_p99_ms_256": med(lambda r: r["streams_256"]["added_ttft_ms"]["p99"]),
        "added_ttft_p99_ms_1": med(lambda r: r["streams_1"]["added_ttft_ms"]["p99"]),
        "cpu_ms_per_stream": med(lambda r: r["streams_32"]["gateway_cpu_ms_per_request"]),
        "cpu_ms_per_call": med(lambda r: r["nonstream_64"]["gateway_cpu_ms_per_request"]),
        "gateway_rps_64": med(lambda r: r["nonstream_64"]["gateway_rps"]),
        "direct_rps_64": med(lambda r: r["nonstream_64"]["direct_rps"]),
        "rss_peak_mib": med(lambda r: r["rss_peak_mib"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each measured phase")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the summary is their median")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    load = [os.getloadavg()[0]]
    runs = []
    with services() as (engine, gateway, pid, admin):
        # uvloop for the load generator too: it shares a core with the engine, the less it costs the
        # less it distorts either path.
        for _ in range(args.repeat):
            runs.append(uvloop.run(measure(engine, gateway, pid, admin, args.seconds)))
            load.append(os.getloadavg()[0])
    rows = verdicts(runs)
    result = {
        "command": "make bench  # .venv/bin/python bench/gateway_bench.py " + shlex.join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        # Latency is only meaningful on a quiet machine: the load average says how quiet it was.
        "load_average_1m": {"min": min(load), "max": max(load), "samples": load},
        "fake_engine": {"ttft_s": TTFT, "itl_s": ITL, "output_tokens": TOKENS},
        "targets": rows,
        # Tail latency on a shared 2-core VM varies from run to run: the median of the runs, then each.
        "median": summary(runs),
        "runs": runs,
    }
    emit(result, args.out)
    print_table(rows, load)
    return 0


if __name__ == "__main__":
    with signals_stop():  # SIGTERM stops the children too
        sys.exit(main())
