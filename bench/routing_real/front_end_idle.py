"""vLLM's time outside its engine core's queue and prefill, on one idle engine: the baseline for the
routing bench's ``engine_timing`` (docs/routing.md, session 19).

    .venv/bin/python bench/routing_real/front_end_idle.py [--requests 15] [--out FILE]

One replica as the routing bench starts it (40 KV blocks, KV events), nothing else running, chat
requests sent one at a time straight to it (system prompts of 350 and 700 of the bench's words,
streamed, ``max_tokens`` 4). Per size: the means ``measure.engine_timing`` reports under the bench's
load, from the engine's own histograms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: results_file, prom_text

from deployment import MODEL, start_engine
from measure import counters, engine_timing, metrics, per_replica
from results_file import emit
from workload import WORDS

import inferstack_devstack as devstack

WARM = 3  # requests first, not measured


async def ttft(session: aiohttp.ClientSession, url: str, words: int, rng: random.Random) -> float:
    messages = [
        {"role": "system", "content": " ".join(rng.choice(WORDS) for _ in range(words))},
        {"role": "user", "content": "Question: " + " ".join(rng.choice(WORDS) for _ in range(35))},
    ]
    body = {"model": MODEL, "messages": messages, "max_tokens": 4, "stream": True}
    started = time.monotonic()
    first = None
    async with session.post(url + "/v1/chat/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if first is None and b'"content"' in line:
                first = time.monotonic() - started
    assert first is not None, "no content in the stream"
    return first


async def measure_idle(requests: int) -> dict[str, Any]:
    devstack.RUN_DIR.mkdir(parents=True, exist_ok=True)
    stack = devstack.Stack(run_dir=Path(tempfile.mkdtemp(prefix="front-end-idle-", dir=devstack.RUN_DIR)))
    out: dict[str, Any] = {}
    try:
        engine = start_engine(stack, 40, devstack.free_port())
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            rng = random.Random(1)
            for words in (350, 700):
                for _ in range(WARM):
                    await ttft(session, engine.url, words, rng)
                before = {engine.url: counters(await metrics(session, engine.url))}
                ttfts = [await ttft(session, engine.url, words, rng) for _ in range(requests)]
                after = {engine.url: counters(await metrics(session, engine.url))}
                replicas = per_replica(before, after, {})
                out[f"system_words_{words}"] = engine_timing(replicas, [{"ttft": t} for t in ttfts])
    finally:
        stack.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=15, help="measured per prompt size")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    load = os.getloadavg()
    result = {
        "command": "python bench/routing_real/front_end_idle.py " + shlex.join(sys.argv[1:]),
        "timings": asyncio.run(measure_idle(args.requests)),
        "load_average_1_5_15": [[round(x, 1) for x in la] for la in (load, os.getloadavg())],
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
