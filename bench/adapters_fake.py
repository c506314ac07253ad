"""Adapter loads and balance per routing policy, through the real gateway to fake engines with LoRA slots.

    .venv/bin/python bench/adapters_fake.py [--requests 300] [--concurrency 1,4,8] [--seeds 1,2]
                                            [--policies round_robin,adapter_affinity] [--out FILE]

2 fake replicas x 2 adapter slots (``max_loras``), 6 adapters in a skewed mix (weights 32:16:8:4:2:1,
seeded), each request a 8-token completion (TTFT 30 ms, 5 ms a token, 50 ms per adapter load). A
client pool of ``concurrency`` sends the same sequence of adapter names per seed to each policy.
Reports adapter loads as the engines count them, requests per replica and max/mean, latency p50/p90.
Real time on a shared machine: loads and balance are the figures; latencies are noisy. The real
engines' version is ``bench/adapters_real``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "service"))

from results_file import emit
from tests.gateway_harness import running_gateway

from inferstack_fake_engine import Behaviour, EngineConfig, running_engine

ADAPTERS = [f"a{i}" for i in range(1, 7)]
WEIGHTS = [32, 16, 8, 4, 2, 1]


def catalog(root: Path) -> Path:
    for a in ADAPTERS:
        (root / a).mkdir(exist_ok=True)
    versions = {a: [{"served_name": a, "source": str(root / a), "weight_percent": 100}] for a in ADAPTERS}
    document = {
        "models": {"m": {"lora": {"max_loras": 2, "adapters_uri": ""}}},
        "aliases": {},
        "adapters": {a: {"base": "m", "versions": v} for a, v in versions.items()},
    }
    path = root / "catalog.json"
    path.write_text(json.dumps(document))
    return path


async def run(policy: str, concurrency: int, requests: int, seed: int, root: Path) -> dict[str, Any]:
    mix = random.Random(seed).choices(ADAPTERS, weights=WEIGHTS, k=requests)
    behaviour = {"ttft": 0.03, "itl": 0.005, "output_tokens": 8, "lora_load_delay": 0.05}

    def engine() -> EngineConfig:
        return EngineConfig(
            models=("m",),
            max_loras=2,
            runtime_lora_updating=True,
            record_requests=requests,
            behaviour=Behaviour(**behaviour),
        )

    async with contextlib.AsyncExitStack() as stack:
        engines = [await stack.enter_async_context(running_engine(engine())) for _ in range(2)]
        url, _ = await stack.enter_async_context(
            running_gateway(
                engines, catalog_file=str(catalog(root)), routing_policy=policy, routing={"adapter_policy": ""}
            )
        )
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60))
        todo = list(reversed(mix))
        latencies: list[float] = []

        async def client() -> None:
            while todo:
                model = todo.pop()
                started = time.monotonic()
                resp = await http.post("/v1/completions", json={"model": model, "prompt": "x", "max_tokens": 8})
                resp.raise_for_status()
                latencies.append(time.monotonic() - started)

        await asyncio.gather(*(client() for _ in range(concurrency)))
        states = [(await http.get(e + "/_fake/lora")).json() for e in engines]
        served = [len((await http.get(e + "/_fake/requests")).json()) for e in engines]
    latencies.sort()
    return {
        "policy": policy,
        "concurrency": concurrency,
        "seed": seed,
        "adapter_loads": sum(sum(s["loads"].values()) for s in states),
        "requests_per_replica": served,
        "max_over_mean": round(max(served) / (sum(served) / len(served)), 3),
        "latency_p50_s": round(latencies[len(latencies) // 2], 3),
        "latency_p90_s": round(latencies[int(len(latencies) * 0.9)], 3),
    }


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--policies", default="round_robin,adapter_affinity")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for concurrency in map(int, args.concurrency.split(",")):
            for seed in map(int, args.seeds.split(",")):
                for policy in args.policies.split(","):
                    runs.append(await run(policy, concurrency, args.requests, seed, Path(tmp)))
                    print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    summary = {}
    for concurrency in {r["concurrency"] for r in runs}:
        mine = [r for r in runs if r["concurrency"] == concurrency]
        loads = {p: sum(r["adapter_loads"] for r in mine if r["policy"] == p) for p in args.policies.split(",")}
        if "round_robin" in loads and "adapter_affinity" in loads:
            summary[str(concurrency)] = {
                "loads_round_robin_over_affinity": round(loads["round_robin"] / max(loads["adapter_affinity"], 1), 2),
                "worst_max_over_mean_affinity": max(
                    r["max_over_mean"] for r in mine if r["policy"] == "adapter_affinity"
                ),
            }
    emit({"command": " ".join(["bench/adapters_fake.py", *sys.argv[1:]]), "runs": runs, "summary": summary}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
