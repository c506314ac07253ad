"""Hot-path cost of the tenancy filters (auth + limits + cache lookup), in-memory backends.

    .venv/bin/python bench/tenancy_bench.py [--requests 20000]

Prints JSON:
- ``cpu_ms_per_request_without``: the same loop with auth off and the cache disabled (what the
  gateway pays for calling the filters at all);
- ``cpu_ms_per_request_with``: auth (key lookup), RPM + TPM + concurrency check-and-charge, the
  budget check, cache key + lookup (a miss), then ``finish`` (settle, accounting, no store);
- ``added_cpu_ms_per_request``: with minus without; the target is <= 0.3 ms;
- ``cache_hit_latency_ms`` p50 / p99: ``admit`` of a request answered from the cache.
CPU time is this process's (``time.process_time``), so a noisy neighbour does not inflate it.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "service"))

from results_file import emit  # noqa: E402

from inferstack.filters import Tenancy, TenancySettings, generate_key, hash_key, open_tenancy  # noqa: E402

MODEL = "bench-model"
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * 400}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 60, "completion_tokens": 100, "total_tokens": 160},
    }
)
USAGE = {"prompt_tokens": 60, "completion_tokens": 100}


def payloads(n: int) -> list[dict[str, Any]]:
    # A realistic chat request (system + user, ~250 bytes), distinct so every lookup misses.
    return [
        {
            "model": MODEL,
            "temperature": 0,
            "max_tokens": 100,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
                {
                    "role": "user",
                    "content": f"Request {i}: summarise the benefits of continuous batching in two lines.",
                },
            ],
        }
        for i in range(n)
    ]


async def loop(t: Tenancy, items: list[dict[str, Any]], headers: list[tuple[bytes, bytes]]) -> float:
    start = time.process_time()
    for payload in items:
        adm = await t.admit("chat", payload, b"", headers, "rev-1")
        await t.finish(adm, status=200, usage=USAGE)
    return (time.process_time() - start) * 1000 / len(items)


async def run(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        key = generate_key()
        keys = Path(tmp) / "keys.yaml"
        # Limits high enough never to reject: the bench measures the checks, not rejections.
        keys.write_text(
            f"keys:\n  - key_sha256: {hash_key(key)}\n    tenant: bench\n"
            f"    rpm: 100000000\n    tpm: 1000000000000\n    max_concurrency: 1000\n"
            f"    monthly_budget_usd: 1000000000\n"
        )
        prices = Path(tmp) / "prices.yaml"
        prices.write_text(f"models: {{{MODEL}: {{prompt_per_1m: 0.1, completion_per_1m: 0.4}}}}")
        headers = [
            (b"host", b"gateway"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"user-agent", b"OpenAI/Python 1.50"),
        ]
        items = payloads(n)
        off = TenancySettings.model_validate({"cache": {"enabled": False}})
        async with open_tenancy(off, registry=CollectorRegistry(), auth_enabled=False) as bare:
            await loop(bare, items[:1000], headers)  # warm-up
            without = await loop(bare, items, headers)
        async with open_tenancy(
            TenancySettings(), registry=CollectorRegistry(), keys_file=str(keys), prices_file=str(prices)
        ) as full:
            await loop(full, payloads(1000), headers)
            with_ = await loop(full, items, headers)
            # Cache hits: store one answer, then time admit() of the same request.
            adm = await full.admit("chat", items[0], b"", headers, "rev-2")
            await full.finish(adm, status=200, usage=USAGE, response=ANSWER)
            latencies = []
            for _ in range(min(n, 5000)):
                began = time.perf_counter()
                hit = await full.admit("chat", items[0], b"", headers, "rev-2")
                latencies.append((time.perf_counter() - began) * 1000)
                assert hit.cached is not None
                await full.finish(hit, status=200, reached_upstream=False)
        latencies.sort()
        return {
            "requests": n,
            "cpu_ms_per_request_without": round(without, 4),
            "cpu_ms_per_request_with": round(with_, 4),
            "added_cpu_ms_per_request": round(with_ - without, 4),
            "target_added_cpu_ms": 0.3,
            "cache_hit_latency_ms": {
                "p50": round(latencies[len(latencies) // 2], 4),
                "p99": round(latencies[int(len(latencies) * 0.99)], 4),
            },
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    result = {
        "command": "make bench  # .venv/bin/python bench/tenancy_bench.py " + shlex.join(sys.argv[1:]),
        **asyncio.run(run(args.requests)),
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
