"""``make bench-routing-real``: routing policies on real vLLM CPU replicas, judged by the engines' own counters.

    .venv/bin/python bench/routing_real/run.py [--replicas 3] [--out bench/routing_real/results.json]

Starts N vLLM replicas of the tiny model with KV events and a small KV cache (``--kv-blocks`` blocks
each, so one replica cannot hold every tenant's prefix) and one gateway with ``precise_prefix``
enabled. For each policy it empties every engine's prefix cache (``/reset_prefix_cache``, dev mode),
replays the same shared-prefix multi-turn workload through the gateway (``--concurrency`` at once)
and reports:

- ``hit_rate``: the engines' ``vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total``
  (prompt tokens served from cache / prompt tokens), in total and per replica;
- ``oracle_hit_rate``: for each request, at the moment it is sent, the longest prefix any replica
  holds according to the engines' KV events (the bench subscribes to them itself), over the same
  prompt tokens: what always picking the best-cached replica would have hit on that run's cache state;
- TTFT p50/p90 (client side, streaming: to the first content chunk) and max/mean prompt tokens per
  replica (load balance).

Hit rates do not depend on timing, so they are meaningful on a loaded machine; TTFT does, and on a
shared 2-core machine it is noise. The assistant turns of the workload are fixed text (not the
engine's output) so every policy sees byte-identical requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from results_file import emit  # noqa: E402

import inferstack_devstack as devstack  # noqa: E402
from inferstack.kvcache.blocks import prompt_block_hashes  # noqa: E402
from inferstack.kvcache.index import KVIndex  # noqa: E402
from inferstack.kvcache.metrics import KVMetrics  # noqa: E402
from inferstack.kvcache.subscriber import KVEventHub  # noqa: E402
from inferstack.kvcache.tokenize import engine_token_ids, tokenize_body  # noqa: E402
from inferstack_engine import tinymodel_build  # noqa: E402
from inferstack_engine.vllm import EngineOptions  # noqa: E402

POLICIES = ("round_robin", "prefix_affinity", "precise_prefix")
MODEL = "tiny-llama"
WORDS = [
    "river",
    "stone",
    "ledger",
    "harbour",
    "winter",
    "signal",
    "garden",
    "copper",
    "meadow",
    "lantern",
    "orbit",
    "candle",
    "forest",
    "thunder",
    "mirror",
    "parcel",
    "silver",
    "window",
    "anchor",
    "violet",
]


def workload(seed: int, tenants: int, conversations: int, turns: int, system_words: int) -> list[list[dict[str, Any]]]:
    """Conversations as lists of turns (each turn: the full messages list sent), interleaved later."""
    rng = random.Random(seed)
    systems = [
        f"Tenant {t} policy. " + " ".join(rng.choice(WORDS) for _ in range(system_words)) for t in range(tenants)
    ]
    convs = []
    for t in range(tenants):
        for c in range(conversations):
            messages: list[dict[str, Any]] = [{"role": "system", "content": systems[t]}]
            conv = []
            for turn in range(turns):
                question = f"Conversation {c} question {turn}: " + " ".join(rng.choice(WORDS) for _ in range(30))
                messages = [*messages, {"role": "user", "content": question}]
                conv.append(list(messages))
                messages = [*messages, {"role": "assistant", "content": " ".join(rng.choice(WORDS) for _ in range(20))}]
            convs.append(conv)
    return convs


def scrape(text: str) -> dict[tuple[str, str], float]:
    """(metric name, label text) -> value."""
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head, value = line.rsplit(" ", 1)
            name, _, labels = head.partition("{")
            out[(name, labels)] = float(value)
    return out


def total(samples: dict[tuple[str, str], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


class Bench:
    def __init__(self, session: aiohttp.ClientSession, engines: list[str], gateway: str, hub: KVEventHub) -> None:
        self.session, self.engines, self.gateway, self.hub = session, engines, gateway, hub
        self.index = hub.index

    async def engine_metrics(self) -> dict[str, dict[tuple[str, str], float]]:
        out = {}
        for url in self.engines:
            async with self.session.get(url + "/metrics") as resp:
                out[url] = scrape(await resp.text())
        return out

    async def reset(self) -> None:
        for url in self.engines:
            async with self.session.post(url + "/reset_prefix_cache") as resp:
                assert resp.status == 200, await resp.text()
        # vLLM queues AllBlocksCleared until its next step: a request shorter than a block flushes it.
        for url in self.engines:
            payload = {"model": MODEL, "prompt": "flush", "max_tokens": 1}
            async with self.session.post(url + "/v1/completions", json=payload) as resp:
                await resp.read()
        end = time.monotonic() + 30
        while any(self.index.replicas[u].held for u in self.engines):
            assert time.monotonic() < end, "engines' AllBlocksCleared events did not arrive"
            await asyncio.sleep(0.1)

    async def oracle_tokens(self, messages: list[dict[str, Any]]) -> tuple[int, int]:
        """(prompt tokens, the most of them any replica holds now, by the events)."""
        body = tokenize_body(MODEL, {"messages": messages}, "chat")
        assert body is not None
        tokens = await engine_token_ids(self.session, self.engines[0], body, 30)
        assert tokens is not None
        best = 0
        for url in self.engines:
            size = self.index.block_size(url)
            if size:
                chain = prompt_block_hashes(tokens, size)
                best = max(best, self.index.match(chain, [url])[url] * size)
        return len(tokens), min(best, len(tokens) - 1)  # vLLM always computes the last token

    async def turn(self, policy: str, messages: list[dict[str, Any]], record: dict[str, list[float]]) -> None:
        prompt, cached = await self.oracle_tokens(messages)
        record["oracle_prompt"].append(prompt)
        record["oracle_cached"].append(cached)
        started = time.perf_counter()
        payload = {"model": MODEL, "messages": messages, "max_tokens": 4, "stream": True}
        headers = {"x-inferstack-routing-policy": policy}
        async with self.session.post(self.gateway + "/v1/chat/completions", json=payload, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            first = None
            async for line in resp.content:
                if first is None and line.startswith(b"data: {") and b'"content":"' in line.replace(b" ", b""):
                    first = time.perf_counter() - started
            record["ttft"].append(first if first is not None else time.perf_counter() - started)

    async def run_policy(
        self, policy: str, convs: list[list[list[dict[str, Any]]]], concurrency: int
    ) -> dict[str, Any]:
        await self.reset()
        before = await self.engine_metrics()
        record: dict[str, list[float]] = {"ttft": [], "oracle_prompt": [], "oracle_cached": []}
        queue = list(range(len(convs)))
        rng = random.Random(7)
        rng.shuffle(queue)
        progress = [0] * len(convs)

        async def worker() -> None:
            # Each worker takes the next conversation turn in a fixed random order; a conversation's
            # turns stay in order (one worker owns a conversation until it is done).
            while queue:
                c = queue.pop()
                for messages in convs[c][progress[c] :]:
                    await self.turn(policy, messages, record)
                    progress[c] += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
        after = await self.engine_metrics()
        per_replica = {}
        for url in self.engines:
            hits = total(after[url], "vllm:prefix_cache_hits_total") - total(
                before[url], "vllm:prefix_cache_hits_total"
            )
            queries = total(after[url], "vllm:prefix_cache_queries_total") - total(
                before[url], "vllm:prefix_cache_queries_total"
            )
            prompt = total(after[url], "vllm:prompt_tokens_total") - total(before[url], "vllm:prompt_tokens_total")
            per_replica[url] = {"hits": hits, "queries": queries, "prompt_tokens": prompt}
        hits = sum(r["hits"] for r in per_replica.values())
        queries = sum(r["queries"] for r in per_replica.values())
        loads = [r["prompt_tokens"] for r in per_replica.values()]
        ttft = sorted(record["ttft"])
        oracle = sum(record["oracle_cached"]) / max(1.0, sum(record["oracle_prompt"]))
        return {
            "requests": len(ttft),
            "seconds": round(elapsed, 1),
            "hit_rate": round(hits / queries, 4) if queries else 0.0,
            "oracle_hit_rate": round(oracle, 4),
            "hits": hits,
            "queries": queries,
            "ttft_p50_s": round(statistics.median(ttft), 4),
            "ttft_p90_s": round(ttft[int(0.9 * (len(ttft) - 1))], 4),
            "load_max_over_mean": round(max(loads) / statistics.mean(loads), 3) if sum(loads) else None,
            "per_replica": {
                u: {"hit_rate": round(r["hits"] / r["queries"], 4) if r["queries"] else 0.0, **r}
                for u, r in per_replica.items()
            },
        }


def rss_mib(pid: int) -> float:
    """Resident memory of a process group (the API server and its engine-core child), in MiB."""
    total_kib = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except (OSError, ProcessLookupError):
            continue
    return round(total_kib / 1024, 1)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    devstack.RUN_DIR.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-routing-real-", dir=devstack.RUN_DIR))
    stack = devstack.Stack(run_dir=run_dir, progress=lambda m: print(m, file=sys.stderr))
    tinymodel_build(devstack.DEFAULT_MODEL_DIR)
    options = EngineOptions(extra_args=("--num-gpu-blocks-override", str(args.kv_blocks)))
    hub = None
    try:
        ports = [devstack.free_port() for _ in range(args.replicas)]
        with ThreadPoolExecutor(args.replicas) as pool:  # start together: each takes a minute or more
            engines = list(
                pool.map(
                    lambda port: devstack.start_engine(
                        stack,
                        str(devstack.DEFAULT_MODEL_DIR),
                        MODEL,
                        port=port,
                        options=options,
                        env={"VLLM_SERVER_DEV_MODE": "1"},  # /reset_prefix_cache between policies
                    ),
                    ports,
                )
            )
        urls = [e.url for e in engines]
        memory = {e.url: rss_mib(e.process.pid) for e in engines}
        endpoints = {u: devstack.kv_events_endpoint(run_dir, u) for u in urls}
        gateway = devstack.start_gateway(
            stack,
            urls,
            env={
                "INFERSTACK_AUTH_ENABLED": "false",
                "INFERSTACK_TENANCY__CACHE__ENABLED": "false",
                **devstack.kv_events_env(endpoints),
            },
        )
        hub = KVEventHub(KVIndex(), KVMetrics(CollectorRegistry()), endpoints=endpoints)
        convs = workload(args.seed, args.tenants, args.conversations, args.turns, args.system_words)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
            hub.set_urls(urls)
            bench = Bench(session, urls, gateway.url, hub)
            # Warm-up: events flow to the bench's subscribers (ZMQ drops what precedes a subscription).
            end = time.monotonic() + 120
            while any(hub.index.block_size(u) is None for u in urls):
                assert time.monotonic() < end, "no KV events from the engines"
                for u in urls:
                    payload = {
                        "model": MODEL,
                        "prompt": " ".join(random.choice(WORDS) for _ in range(400)),
                        "max_tokens": 1,
                    }
                    async with session.post(u + "/v1/completions", json=payload) as resp:
                        await resp.read()
                await asyncio.sleep(0.3)
            results = {p: await bench.run_policy(p, convs, args.concurrency) for p in args.policies}
            async with session.get(gateway.admin_url + "/metrics") as resp:
                gw = scrape(await resp.text()) if resp.status == 200 else {}
        decisions: dict[str, dict[str, float]] = {}
        for (name, labels), value in gw.items():
            if name == "inferstack_routing_decisions_total":
                parts = dict(kv.split("=") for kv in labels.rstrip("}").split(","))
                decisions.setdefault(parts["policy"].strip('"'), {})[parts["reason"].strip('"')] = value
        for p in results:
            results[p]["decisions"] = decisions.get(p, {})
        rr = results.get("round_robin", {}).get("hit_rate") or None
        pa = results.get("prefix_affinity", {}).get("hit_rate") or None
        pp = results.get("precise_prefix", {})
        return {
            "command": "make bench-routing-real  # " + " ".join(sys.argv[1:]),
            "note": "hit rates are timing-independent; TTFT was measured on a shared, loaded 2-core machine: noise",
            "settings": vars(args),
            "engine_rss_mib": memory,
            "policies": results,
            "precise_vs_round_robin": round(pp["hit_rate"] / rr, 3) if pp and rr else None,
            "precise_vs_prefix_affinity": round(pp["hit_rate"] / pa, 3) if pp and pa else None,
            "precise_vs_oracle": round(pp["hit_rate"] / pp["oracle_hit_rate"], 3)
            if pp and pp["oracle_hit_rate"]
            else None,
        }
    finally:
        if hub is not None:
            await hub.close()
        stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--kv-blocks", type=int, default=40, help="KV blocks per replica (128 tokens each on CPU)")
    parser.add_argument("--tenants", type=int, default=12)
    parser.add_argument("--conversations", type=int, default=2, help="per tenant")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--system-words", type=int, default=350)
    parser.add_argument(
        "--concurrency", type=int, default=4, help="not a multiple of --replicas: round robin would stick by accident"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    out = args.out
    args.out = str(out) if out else None
    emit(result, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
