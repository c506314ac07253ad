"""Where a stream's added time to first token goes, request by request, at high concurrency.

    .venv/bin/python bench/tail_breakdown.py [--concurrency 256] [--seconds 15] [--arrivals lockstep,stagger] [--out F]

The layout of bench/gateway_bench.py (gateway on core 0; fake engine and this load generator on
core 1), the gateway run by bench/traced_gateway.py, which notes per request when its bytes were
parsed, its task ran, it went upstream, the engine's headers and first body bytes came back and
the first bytes went to the client. This load generator notes when it sent each request and when
its first content event arrived, on the same clock (CLOCK_MONOTONIC). Joined by request id, each
stream's time to first token splits into:

    to_gateway     client's send -> the gateway parsed the request's first bytes
    parse          first bytes -> headers parsed (the request task created)
    task_start     -> the task ran the endpoint
    pipeline       -> handed to the upstream pool (body, admission, scheduling, hold queue)
    engine_accept  -> the engine's response headers parsed by the gateway
    engine_ttft    -> the engine's first body bytes parsed by the gateway (its 50 ms TTFT)
    relay          -> the first bytes written to the client
    to_client      -> the load generator read the first content event

reported as quantiles over all streams and as the mean over the slowest 1 % (the p99 tail), next
to the direct path (the same load straight at the engine), the CPU each process used (a fraction
of a core: is core 1, shared by the engine and this load generator, saturated?), the gateway's
event-loop lag and garbage-collection pauses, and how bunched the requests' arrivals were.

Two arrival patterns (``--arrivals``), each run straight and through the gateway: ``lockstep``, the
closed-loop workers all starting at once, as bench/gateway_bench.py's did (every stream equally
long, they stay in lock step: ``concurrency`` requests arrive together, once per stream length), and
``stagger``, the workers' starts spread evenly over one stream's length (the same concurrency, the
arrivals spread out, as independent clients' would be).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop
from gateway_bench import CHAT, ITL, REPO, TOKENS, TTFT, cpu_seconds, start_fake_engine, start_gateway
from results_file import emit

from inferstack_devstack import Stack, signals_stop

SEGMENTS = (
    ("to_gateway", "c_send", "begin"),
    ("parse", "begin", "headers"),
    ("task_start", "headers", "app"),
    ("pipeline", "app", "send"),
    ("engine_accept", "send", "up_headers"),
    ("engine_ttft", "up_headers", "up_body"),
    ("relay", "up_body", "write"),
    ("to_client", "write", "c_first"),
)
IDS = itertools.count()


async def one_stream(session: aiohttp.ClientSession, url: str, records: dict[str, dict[str, float]]) -> None:
    rid = f"t{next(IDS)}"
    rec = records[rid] = {"c_send": time.perf_counter()}
    headers = {"x-request-id": rid}
    async with session.post(url + "/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers) as resp:
        assert resp.status == 200, resp.status
        async for line in resp.content:
            if line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line:
                rec["c_first"] = time.perf_counter()
                break
        rest = await resp.content.read()
        assert rest.endswith(b"data: [DONE]\n\n"), rest[-40:]


async def lag_watch(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + 0.005
        await asyncio.sleep(0.005)
        lags.append(loop.time() - due)


async def closed_loop(url: str, concurrency: int, seconds: float, stagger: bool) -> dict[str, Any]:
    """Streams from ``concurrency`` workers for ``seconds`` (after a warm-up); their records."""
    records: dict[str, dict[str, float]] = {}
    warm: dict[str, dict[str, float]] = {}
    lags: list[float] = []
    stop = asyncio.Event()
    stream_s = TTFT + (TOKENS - 1) * ITL
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(one_stream(session, url, warm) for _ in range(concurrency)))
        watch = asyncio.create_task(lag_watch(lags, stop))
        deadline = time.perf_counter() + seconds

        async def worker(i: int) -> None:
            if stagger:
                await asyncio.sleep(stream_s * i / concurrency)
            while time.perf_counter() < deadline:
                await one_stream(session, url, records)

        self_cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
        stop.set()
        await watch
    return {
        "records": records,
        "elapsed": elapsed,
        "client_cpu": (time.process_time() - self_cpu) / elapsed,
        "client_lag": lags,
    }


def q(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


def ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(q(values, 0.5) * 1e3, 3),
        "p99": round(q(values, 0.99) * 1e3, 3),
        "mean": round(statistics.fmean(values) * 1e3, 3) if values else float("nan"),
        "max": round(max(values) * 1e3, 3) if values else float("nan"),
    }


def breakdown(client: dict[str, dict[str, float]], gateway: dict[str, dict[str, float]]) -> dict[str, Any]:
    joined = []
    for rid, rec in client.items():
        g = gateway.get(rid)
        if g is None or "c_first" not in rec or any(k not in g for _, a, b in SEGMENTS for k in (a, b) if k[0] != "c"):
            continue
        joined.append({**rec, **g})
    joined.sort(key=lambda r: r["c_first"] - r["c_send"])
    tail = joined[int(len(joined) * 0.99) :]
    out: dict[str, Any] = {"streams_joined": len(joined), "streams_in_tail": len(tail)}
    out["ttft_ms"] = ms([r["c_first"] - r["c_send"] for r in joined])
    out["segments_ms"] = {name: ms([r[b] - r[a] for r in joined]) for name, a, b in SEGMENTS}
    out["tail_1pct_mean_ms"] = {
        name: round(statistics.fmean(r[b] - r[a] for r in tail) * 1e3, 3) for name, a, b in SEGMENTS
    }
    return out


def arrivals(client: dict[str, dict[str, float]]) -> dict[str, Any]:
    """How bunched the requests' sends were: the most in any 10 ms window, and the mean."""
    sends = sorted(r["c_send"] for r in client.values())
    if not sends:
        return {}
    buckets: dict[int, int] = {}
    for t in sends:
        buckets[int(t / 0.01)] = buckets.get(int(t / 0.01), 0) + 1
    span = (sends[-1] - sends[0]) / 0.01 or 1
    return {"max_per_10ms": max(buckets.values()), "mean_per_10ms": round(len(sends) / span, 2)}


async def phase(url: str, pids: dict[str, int], concurrency: int, seconds: float, stagger: bool) -> dict[str, Any]:
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    run = await closed_loop(url, concurrency, seconds, stagger)
    cpu = {name: round((cpu_seconds(pid) - cpu0[name]) / run["elapsed"], 3) for name, pid in pids.items()}
    cpu["load_generator"] = round(run["client_cpu"], 3)
    return {**run, "cpu_cores": cpu}


def gateway_trace(out: Path) -> dict[str, Any]:
    trigger = Path(str(out) + ".dump")
    out.unlink(missing_ok=True)
    trigger.touch()
    deadline = time.monotonic() + 30
    while trigger.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    data: dict[str, Any] = orjson.loads(out.read_bytes())
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--arrivals",
        default="lockstep,stagger",
        help="comma-separated: lockstep (all workers start at once, as bench/gateway_bench.py did), stagger",
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    stack = Stack(run_dir=REPO / ".cache" / "tail")
    trace_out = REPO / ".cache" / "tail" / "trace.json"
    load = [os.getloadavg()[0]]
    runs = []
    try:
        engine = start_fake_engine(stack)
        argv = [sys.executable, str(REPO / "bench" / "traced_gateway.py")]
        env = {"GATEWAY_TRACE_OUT": str(trace_out)}
        gateway = start_gateway(stack, engine.url, argv=argv, env=env)
        pids = {"gateway": gateway.process.pid, "fake_engine": engine.process.pid}
        for arrival in [a for _ in range(args.repeat) for a in args.arrivals.split(",")]:
            stagger = arrival == "stagger"
            gateway_trace(trace_out)  # forget what came before
            direct = uvloop.run(phase(engine.url, pids, args.concurrency, args.seconds, stagger))
            via = uvloop.run(phase(gateway.url, pids, args.concurrency, args.seconds, stagger))
            trace = gateway_trace(trace_out)
            load.append(os.getloadavg()[0])
            direct_ttft = [r["c_first"] - r["c_send"] for r in direct["records"].values() if "c_first" in r]
            via_ttft = [r["c_first"] - r["c_send"] for r in via["records"].values() if "c_first" in r]
            gcs = trace["gc"]
            runs.append(
                {
                    "arrivals": arrival,
                    "load_average_1m": os.getloadavg()[0],
                    "direct": {
                        "ttft_ms": ms(direct_ttft),
                        "cpu_cores": direct["cpu_cores"],
                        "load_generator_loop_lag_ms": ms(direct["client_lag"]),
                        "arrivals": arrivals(direct["records"]),
                    },
                    "gateway": {
                        "ttft_ms": ms(via_ttft),
                        "added_ttft_ms": {
                            p: round((q(via_ttft, x) - q(direct_ttft, x)) * 1e3, 3)
                            for p, x in (("p50", 0.5), ("p99", 0.99))
                        },
                        "cpu_cores": via["cpu_cores"],
                        "load_generator_loop_lag_ms": ms(via["client_lag"]),
                        "gateway_loop_lag_ms": ms([lag for _, lag in trace["loop_lag"]]),
                        "gc": {
                            "threshold": trace["gc_threshold"],
                            "collections": len(gcs),
                            "by_generation": {str(g): sum(1 for c in gcs if c[2] == g) for g in (0, 1, 2)},
                            "pause_ms": ms([c[1] for c in gcs]) if gcs else {},
                        },
                        "arrivals": arrivals(via["records"]),
                        "breakdown": breakdown(via["records"], trace["requests"]),
                    },
                }
            )
            print(orjson.dumps(runs[-1], option=orjson.OPT_INDENT_2).decode(), file=sys.stderr)
    finally:
        stack.stop()
    result = {
        "command": ".venv/bin/python bench/tail_breakdown.py " + shlex.join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_average_1m": {"min": min(load), "max": max(load), "samples": load},
        "fake_engine": {"ttft_s": TTFT, "itl_s": ITL, "output_tokens": TOKENS},
        "concurrency": args.concurrency,
        "runs": runs,
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    with signals_stop():  # SIGTERM stops the children too
        sys.exit(main())
