"""``make bench-routing-real``: routing policies on real vLLM CPU replicas, judged by the engines' own counters.

    .venv/bin/python bench/routing_real/run.py [--plan default|pressure] [--replicas 3] [--gateways 3] [--out FILE]

The deployment as it runs in Kubernetes, on one machine: ``--replicas`` vLLM replicas of the tiny model
with KV events and a small KV cache (``--kv-blocks`` blocks each, so no replica holds every tenant's
history), and ``--gateways`` gateway processes in front of them, each with its own in-process
``prefix_affinity`` memory and its own subscription to the engines' KV events. The client spreads
routed turns over the gateways at random, as a Service spreads clients over gateway pods; a share of
turns (``--direct-share``) reaches an engine directly (a client in the cluster calling the engine
Service); and once per policy one engine is restarted mid-run (SIGTERM, then started again: its
cache is empty when it returns).

For each policy it empties every engine's prefix cache (``/reset_prefix_cache``, dev mode), replays
the same plan (``workload.py``: the same requests, the same gateway or engine for each) with
``--concurrency`` conversations at once, and reports:

- ``hit_rate``: the engines' ``vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total`` (all
  traffic, routed and direct), in total and per replica; ``routed_hit_rate``: the same for the
  requests the gateways routed (``usage.prompt_tokens_details.cached_tokens`` / prompt tokens);
- ``oracle_hit_rate``: for each routed request, at the moment it is sent, the longest prefix any
  running replica holds according to the engines' KV events (the bench subscribes to them itself),
  over the same prompt tokens: what always picking the best-cached replica would have hit;
- TTFT p50/p90 of routed requests (client side, streaming: to the first content chunk) and max/mean
  prompt tokens per replica (load balance);
- ``where_tokens_went``: the routed turns' gap to the oracle, split into the choice (tokens the chosen
  replica held fewer than the best one at send time, per decision reason, from the gateways' access
  logs joined on the bench's ``x-request-id``) and what happened after it (held at send, not hit), by
  when the first lost block was removed against the send (``turn_log.why_lost``), and the survival
  oracle beside the send-time one (``turn_log.survival_oracle``: what other replicas still held at
  the turn's first token). Every turn's record (held per replica at the send and at the first token,
  choice, reason, hits, ``lost_cause``) goes to ``<out>.turns.jsonl.gz``.

The restart's timing is fixed in requests, not seconds: the engine is stopped when ``--restart-at`` of
the turns have started, and no turn past ``--rejoin-at`` starts before it is back and every gateway
routes to it again, so every policy sees the same three phases (all up, one down, one back and cold).
Hit rates depend little on timing, so they are meaningful on a loaded machine; TTFT does, and on a
shared 2-core machine it is noise.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from prom_text import scrape, total  # noqa: E402
from results_file import emit  # noqa: E402
from turn_log import TimedIndex, access_lines, where_tokens_went, why_lost  # noqa: E402
from workload import WORDS, Shape, conversations, order, routes  # noqa: E402

import inferstack_devstack as devstack  # noqa: E402
from inferstack.kvcache.blocks import prompt_block_hashes  # noqa: E402
from inferstack.kvcache.metrics import KVMetrics  # noqa: E402
from inferstack.kvcache.subscriber import KVEventHub  # noqa: E402
from inferstack.kvcache.tokenize import engine_token_ids, tokenize_body  # noqa: E402
from inferstack_engine import tinymodel_build  # noqa: E402
from inferstack_engine.vllm import EngineOptions  # noqa: E402

POLICIES = ("round_robin", "prefix_affinity", "precise_prefix")
MODEL = "tiny-llama"
ENGINE_ENV = {"VLLM_SERVER_DEV_MODE": "1"}  # /reset_prefix_cache between policies
COUNTERS = (
    "vllm:prefix_cache_hits_total",
    "vllm:prefix_cache_queries_total",
    "vllm:prompt_tokens_total",
    "vllm:num_preemptions_total",  # a preempted request queries the cache again when it resumes
)


def counters(samples: dict[tuple[str, str], float]) -> dict[str, float]:
    return {name: total(samples, name) for name in COUNTERS}


def ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b else 0.0


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[int(q * (len(ordered) - 1))], 4) if ordered else None


class Bench:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        stack: devstack.Stack,
        engines: list[devstack.Service],
        gateways: list[devstack.Service],
        hub: KVEventHub,
        args: argparse.Namespace,
    ) -> None:
        self.session, self.stack, self.engines, self.gateways, self.hub, self.a = (
            session,
            stack,
            engines,
            gateways,
            hub,
            args,
        )
        self.urls = [e.url for e in engines]
        assert isinstance(hub.index, TimedIndex)
        self.index: TimedIndex = hub.index
        self.removals: dict[str, Any] = {}
        shape = Shape(
            args.tenants, args.conversations, args.turns, args.system_words, args.user_words, args.answer_words
        )
        self.convs = conversations(shape, args.seed)
        self.plan = routes(self.convs, args.gateways, args.replicas, args.direct_share, args.seed)
        self.tokens: dict[tuple[int, int], list[int]] = {}
        self.system_tokens: list[int] = []
        self.down: set[str] = set()
        self.phase = "all_up"
        self.records: dict[str, list[dict[str, Any]]] = {}

    async def get(self, url: str) -> dict[tuple[str, str], float]:
        async with self.session.get(url + "/metrics") as resp:
            return scrape(await resp.text())

    async def tokenize_all(self) -> None:
        """Every turn's token ids, once (the engine's own template: the ids it will hash)."""
        sem = asyncio.Semaphore(4)

        async def one(key: tuple[int, int]) -> None:
            body = tokenize_body(MODEL, {"messages": self.convs[key[0]][key[1]]}, "chat")
            assert body is not None
            async with sem:
                tokens = await engine_token_ids(self.session, self.urls[0], body, 60)
            assert tokens is not None, "the engine's /tokenize failed"
            self.tokens[key] = tokens

        await asyncio.gather(*(one(key) for key in self.plan))
        # Each tenant's system prompt alone, as the engine renders it: what one replica's cache is held against.
        for conv in self.convs[:: self.a.conversations]:
            body = tokenize_body(MODEL, {"messages": conv[0][:1]}, "chat")
            assert body is not None
            tokens = await engine_token_ids(self.session, self.urls[0], body, 60)
            assert tokens is not None, "the engine's /tokenize failed"
            self.system_tokens.append(len(tokens))

    async def reset(self) -> None:
        for url in self.urls:
            async with self.session.post(url + "/reset_prefix_cache") as resp:
                assert resp.status == 200, await resp.text()
        # vLLM queues AllBlocksCleared until its next step: a request shorter than a block flushes it.
        for url in self.urls:
            payload = {"model": MODEL, "prompt": "flush", "max_tokens": 1}
            async with self.session.post(url + "/v1/completions", json=payload) as resp:
                await resp.read()
        end = time.monotonic() + 30
        while any(self.index.replicas[u].held for u in self.urls):
            assert time.monotonic() < end, "engines' AllBlocksCleared events did not arrive"
            await asyncio.sleep(0.1)

    def held(self, tokens: list[int]) -> dict[str, int]:
        """Prompt tokens each running replica holds now, by the engines' events (the oracle takes the most)."""
        out = {}
        for url in self.urls:
            size = self.index.block_size(url)
            if size and url not in self.down:
                held = self.index.match(prompt_block_hashes(tokens, size), [url])[url] * size
                out[url] = min(held, len(tokens) - 1)  # vLLM always computes the last token
        return out

    async def gateways_route_to_all(self) -> None:
        """Until every gateway counts every replica ready again (its health checks saw the restart)."""
        end = time.monotonic() + 120
        while True:
            ready = []
            for g in self.gateways:
                samples = await self.get(g.admin_url)
                ready.append(
                    sum(
                        v
                        for (n, labels), v in samples.items()
                        if n == "inferstack_upstream_replicas" and 'state="ready"' in labels
                    )
                )
            if all(r >= len(self.urls) for r in ready):
                return
            assert time.monotonic() < end, f"gateways see {ready} ready replicas"
            await asyncio.sleep(0.5)

    async def restart(self, i: int, before: dict[str, float], lost: dict[str, dict[str, float]]) -> dict[str, Any]:
        """Stop engine ``i`` (SIGTERM, as Kubernetes does) and start it again on the same port."""
        engine, url = self.engines[i], self.urls[i]
        pre = counters(await self.get(url))
        lost[url] = {k: pre[k] - before[k] for k in COUNTERS}  # the new process's counters start at 0
        self.down.add(url)
        self.phase = "one_down"
        started = time.monotonic()
        await asyncio.to_thread(devstack.stop_process_group, engine.process, 20.0)
        self.index.leave(url)  # the oracle: its cache is gone (the gateways learn it from the events)
        self.index.join(url)
        port = int(url.rsplit(":", 1)[1])
        options = EngineOptions(extra_args=("--num-gpu-blocks-override", str(self.a.kv_blocks)))
        self.engines[i] = await asyncio.to_thread(
            devstack.start_engine, self.stack, str(devstack.DEFAULT_MODEL_DIR), MODEL, port, 600.0, options, ENGINE_ENV
        )
        await self.gateways_route_to_all()
        self.down.discard(url)
        self.phase = "back_cold"
        return {"replica": url, "seconds_down": round(time.monotonic() - started, 1)}

    async def turn(self, policy: str, c: int, t: int, records: list[dict[str, Any]]) -> None:
        route, tokens = self.plan[(c, t)], self.tokens[(c, t)]
        record: dict[str, Any] = {
            "id": f"{policy}/{c}/{t}",
            "phase": self.phase,
            "direct": route.gateway is None,
            "prompt": len(tokens),
        }
        headers = {}
        if route.gateway is not None:
            record["sent"] = time.time()
            record["held"] = self.held(tokens)
            record["oracle"] = max(record["held"].values(), default=0)
            url = self.gateways[route.gateway].url
            headers = {"x-inferstack-routing-policy": policy, "x-request-id": record["id"]}
        else:
            assert route.engine is not None
            up = [u for u in self.urls if u not in self.down]  # a Service routes to ready endpoints only
            url = self.urls[route.engine] if self.urls[route.engine] in up else up[route.engine % len(up)]
        payload = {
            "model": MODEL,
            "messages": self.convs[c][t],
            "max_tokens": 4,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        started = time.perf_counter()
        first = None
        try:
            async with self.session.post(url + "/v1/chat/completions", json=payload, headers=headers) as resp:
                if resp.status != 200:
                    record["error"] = f"{resp.status} {(await resp.text())[:200]}"
                async for line in resp.content:
                    if not line.startswith(b"data: {"):
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        record["error"] = str(chunk["error"])[:200]
                    if first is None and any(
                        (ch.get("delta") or {}).get("content") for ch in chunk.get("choices") or []
                    ):
                        first = time.perf_counter() - started
                        if route.gateway is not None:  # what survived the wait, for the survival oracle
                            record["held_at_first_token"] = self.held(tokens)
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                        record["prompt_tokens"] = usage["prompt_tokens"]
                        record["cached"] = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        except aiohttp.ClientError as e:
            record["error"] = repr(e)[:200]
        record["ttft"] = first if first is not None else time.perf_counter() - started
        records.append(record)

    async def decisions(self) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for g in self.gateways:
            for (name, labels), value in (await self.get(g.admin_url)).items():
                if name == "inferstack_routing_decisions_total":
                    parts = dict(kv.split("=", 1) for kv in labels.rstrip("}").split(","))
                    key = (parts["policy"].strip('"'), parts["reason"].strip('"'))
                    out[key] = out.get(key, 0.0) + value
        return out

    async def tokenizer_checks(self) -> dict[str, float]:
        """The gateways' local-tokenizer checks by outcome (``--tokenizer local``), and how many use it."""
        out: dict[str, float] = {}
        for g in self.gateways:
            for (name, labels), value in (await self.get(g.admin_url)).items():
                if name == "inferstack_kv_tokenizer_checks_total":
                    outcome = dict(kv.split("=", 1) for kv in labels.rstrip("}").split(","))["outcome"].strip('"')
                    out[outcome] = out.get(outcome, 0.0) + value
                elif name == "inferstack_kv_tokenizer_local":
                    out["gateways_local"] = out.get("gateways_local", 0.0) + value
        return out

    async def run_policy(self, policy: str) -> dict[str, Any]:
        await self.gateways_route_to_all()
        await self.reset()
        self.index.removals.clear()
        before = {u: counters(await self.get(u)) for u in self.urls}
        decided = await self.decisions()
        lost: dict[str, dict[str, float]] = {}
        records: list[dict[str, Any]] = []
        queue = order(len(self.convs), self.a.seed)
        turns = sum(len(conv) for conv in self.convs)
        restart_at, rejoin_at = int(self.a.restart_at * turns), int(self.a.rejoin_at * turns)
        restart: asyncio.Task[dict[str, Any]] | None = None
        started = 0
        self.phase = "all_up"

        async def worker() -> None:
            # Each worker takes the next conversation in the seeded order and sends its turns in order.
            nonlocal started, restart
            while queue:
                c = queue.pop()
                for t in range(len(self.convs[c])):
                    if self.a.restart_at < 1 and started == restart_at and restart is None:
                        restart = asyncio.create_task(
                            self.restart(self.a.restart_replica, before[self.urls[self.a.restart_replica]], lost)
                        )
                    if restart is not None and started >= rejoin_at and not restart.done():
                        await asyncio.wait([restart])
                    started += 1
                    await self.turn(policy, c, t, records)

        clock = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(self.a.concurrency)))
        restarted = await restart if restart is not None else None
        elapsed = time.monotonic() - clock
        per_replica = {}
        for url in self.urls:
            after = counters(await self.get(url))
            base = {k: -before[url][k] for k in COUNTERS} if url not in lost else lost[url]
            d = {k: after[k] + base[k] for k in COUNTERS}
            hits, queries = d["vllm:prefix_cache_hits_total"], d["vllm:prefix_cache_queries_total"]
            per_replica[url] = {
                "hit_rate": ratio(hits, queries),
                "hits": hits,
                "queries": queries,
                "prompt_tokens": d["vllm:prompt_tokens_total"],
                "preemptions": d["vllm:num_preemptions_total"],
            }
        hits = sum(r["hits"] for r in per_replica.values())
        queries = sum(r["queries"] for r in per_replica.values())
        loads = [r["prompt_tokens"] for r in per_replica.values()]
        ok = [r for r in records if "error" not in r and "cached" in r]
        routed = [r for r in ok if not r["direct"]]
        phases = {}
        for phase in ("all_up", "one_down", "back_cold"):
            rs = [r for r in routed if r["phase"] == phase]
            phases[phase] = {
                "requests": len(rs),
                "routed_hit_rate": ratio(sum(r["cached"] for r in rs), sum(r["prompt_tokens"] for r in rs)),
                "oracle_hit_rate": ratio(sum(r["oracle"] for r in rs), sum(r["prompt"] for r in rs)),
            }
        now = await self.decisions()
        self.records[policy] = records
        self.removals[policy] = dict(self.index.removals)
        return {
            "requests": len(records),
            "routed_requests": len(routed),
            "direct_requests": len([r for r in ok if r["direct"]]),
            "errors": len(records) - len(ok),
            "error_samples": sorted({r["error"] for r in records if "error" in r})[:3],
            "seconds": round(elapsed, 1),
            "hit_rate": ratio(hits, queries),
            "routed_hit_rate": ratio(sum(r["cached"] for r in routed), sum(r["prompt_tokens"] for r in routed)),
            "oracle_hit_rate": ratio(sum(r["oracle"] for r in routed), sum(r["prompt"] for r in routed)),
            "hits": hits,
            "queries": queries,
            "preemptions": sum(r["preemptions"] for r in per_replica.values()),
            "ttft_p50_s": percentile([r["ttft"] for r in routed], 0.5),
            "ttft_p90_s": percentile([r["ttft"] for r in routed], 0.9),
            "load_max_over_mean": round(max(loads) / statistics.mean(loads), 3) if sum(loads) else None,
            "phases": phases,
            "restart": restarted,
            "per_replica": per_replica,
            "decisions": {
                r: now[(p, r)] - decided.get((p, r), 0.0)
                for (p, r) in now
                if p == policy and now[(p, r)] > decided.get((p, r), 0.0)
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


async def warm_up(session: aiohttp.ClientSession, hub: KVEventHub, urls: list[str]) -> None:
    """Until events flow to the bench's subscribers (ZMQ drops what precedes a subscription)."""
    end = time.monotonic() + 120
    while any(hub.index.block_size(u) is None for u in urls):
        assert time.monotonic() < end, "no KV events from the engines"
        for u in urls:
            payload = {"model": MODEL, "prompt": " ".join(random.choice(WORDS) for _ in range(400)), "max_tokens": 1}
            async with session.post(u + "/v1/completions", json=payload) as resp:
                await resp.read()
        await asyncio.sleep(0.3)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    devstack.RUN_DIR.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-routing-real-", dir=devstack.RUN_DIR))
    stack = devstack.Stack(run_dir=run_dir, progress=lambda m: print(m, file=sys.stderr))
    tinymodel_build(devstack.DEFAULT_MODEL_DIR)
    options = EngineOptions(extra_args=("--num-gpu-blocks-override", str(args.kv_blocks)))
    hub = None
    load = [os.getloadavg()]
    try:
        ports = [devstack.free_port() for _ in range(args.replicas)]
        with ThreadPoolExecutor(args.replicas) as pool:  # start together: each takes a minute or more
            engines = list(
                pool.map(
                    lambda port: devstack.start_engine(
                        stack, str(devstack.DEFAULT_MODEL_DIR), MODEL, port=port, options=options, env=ENGINE_ENV
                    ),
                    ports,
                )
            )
        urls = [e.url for e in engines]
        memory = {e.url: rss_mib(e.process.pid) for e in engines}
        endpoints = {u: devstack.kv_events_endpoint(run_dir, u) for u in urls}
        env = {
            "INFERSTACK_AUTH_ENABLED": "false",
            "INFERSTACK_TENANCY__CACHE__ENABLED": "false",
            # turn_log reads these logs as data right after the last turn: each line written at once.
            "INFERSTACK_ACCESS_LOG_FLUSH_INTERVAL": "0",
            **devstack.kv_events_env(
                endpoints, {MODEL: str(devstack.DEFAULT_MODEL_DIR)} if args.tokenizer == "local" else None
            ),
            "INFERSTACK_KV_EVENTS__TOKENIZER": args.tokenizer,
            **({"INFERSTACK_ROUTING__PROFILES": args.profiles} if args.profiles else {}),
        }
        gateways = [devstack.start_gateway(stack, urls, env=env) for _ in range(args.gateways)]
        hub = KVEventHub(TimedIndex(), KVMetrics(CollectorRegistry()), endpoints=endpoints)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
            hub.set_urls(urls)
            await warm_up(session, hub, urls)
            bench = Bench(session, stack, engines, gateways, hub, args)
            await bench.tokenize_all()
            results = {}
            for p in args.policies:
                results[p] = await bench.run_policy(p)
                load.append(os.getloadavg())
                results[p]["tokenizer_checks_after"] = await bench.tokenizer_checks()
                print(
                    p,
                    json.dumps(
                        {k: results[p][k] for k in ("hit_rate", "routed_hit_rate", "oracle_hit_rate", "errors")}
                    ),
                    file=sys.stderr,
                )
        access = access_lines(gateways)
        for p, records in bench.records.items():
            for r in records:
                entry = access.get(r["id"], {})
                r.update({k: entry.get(k) for k in ("upstream", "reason", "prefix_blocks")})
                up = r["upstream"]
                if up in r.get("held", {}) and "cached" in r:
                    c, t = map(int, r["id"].split("/")[1:])
                    chain = prompt_block_hashes(bench.tokens[(c, t)], 128)
                    blocks = (r["held"][up] // 128, r["cached"] // 128)
                    r["lost_cause"] = why_lost(bench.removals[p], up, chain, *blocks, r["sent"])
            results[p]["where_tokens_went"] = where_tokens_went(records, access)
        if args.out:
            turns = "".join(json.dumps(r) + "\n" for rs in bench.records.values() for r in rs)
            args.out.with_suffix(".turns.jsonl.gz").write_bytes(gzip.compress(turns.encode(), mtime=0))
        prompts = [len(t) for t in bench.tokens.values()]
        rr = results.get("round_robin", {})
        pa = results.get("prefix_affinity", {})
        pp = results.get("precise_prefix", {})

        def vs(a: dict[str, Any], b: dict[str, Any], key: str, other: str | None = None) -> float | None:
            return round(a[key] / b[other or key], 3) if a and b and b[other or key] else None

        return {
            "command": "make bench-routing-real  # " + " ".join(sys.argv[1:]),
            "note": "hit rates depend little on timing; TTFT was measured on a shared, loaded 2-core machine: noise",
            "settings": {**vars(args), "out": str(args.out) if args.out else None},
            "gateway_environment": {k: v for k, v in os.environ.items() if k.startswith("INFERSTACK_")},
            "workload": {
                "turns": len(prompts),
                "routed_turns": sum(1 for r in bench.plan.values() if r.gateway is not None),
                "direct_turns": sum(1 for r in bench.plan.values() if r.gateway is None),
                "prompt_tokens_mean": round(statistics.mean(prompts)),
                "prompt_tokens_max": max(prompts),
                "prompt_tokens_per_policy": sum(prompts),
                "kv_tokens_per_replica": args.kv_blocks * 128,
                "system_prompt_tokens_mean": round(statistics.mean(bench.system_tokens)),
                "kv_over_system_prompts": round(args.kv_blocks * 128 / sum(bench.system_tokens), 3),
                "kv_over_prompt_max": round(args.kv_blocks * 128 / max(prompts), 2),
            },
            "load_average_1_5_15": [[round(x, 1) for x in la] for la in load],
            "engine_rss_mib": memory,
            "policies": results,
            "precise_vs_round_robin": vs(pp, rr, "hit_rate"),
            "precise_vs_prefix_affinity": vs(pp, pa, "hit_rate"),
            "precise_vs_oracle": vs(pp, pp, "routed_hit_rate", "oracle_hit_rate"),
            "routed_precise_vs_round_robin": vs(pp, rr, "routed_hit_rate"),
            "routed_precise_vs_prefix_affinity": vs(pp, pa, "routed_hit_rate"),
        }
    finally:
        if hub is not None:
            await hub.close()
        stack.stop()


PLANS: dict[str, dict[str, Any]] = {
    "default": {},
    "pressure": {"tenants": 36, "conversations": 1, "concurrency": 12},
}
"""Named plans (``--plan``; explicit flags still override them). ``default``: one replica's KV cache is
0.53 of the 12 tenants' system prompts, 5 conversations at a time. ``pressure``: the same prompts and
turn count (36 six-turn conversations), one conversation per tenant, so one replica's cache is 0.18 of
the 36 system prompts, and 12 conversations at a time: in this closed loop the live conversations are
the working set, and the simulator at this bench's shape reaches the goals only with both
(bench/routing/real_shape.json, docs/routing.md)."""


def main() -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plan", choices=list(PLANS), default="default", help="a named plan (flags override it)")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], parents=[pre])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--gateways", type=int, default=3, help="gateway processes (pods behind a Service)")
    parser.add_argument("--kv-blocks", type=int, default=40, help="KV blocks per replica (128 tokens each on CPU)")
    parser.add_argument("--tenants", type=int, default=12)
    parser.add_argument("--conversations", type=int, default=3, help="per tenant")
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--system-words", type=int, default=350)
    parser.add_argument("--user-words", type=int, default=35)
    parser.add_argument("--answer-words", type=int, default=35)
    parser.add_argument("--direct-share", type=float, default=0.2, help="turns sent straight to an engine")
    parser.add_argument("--restart-replica", type=int, default=0)
    parser.add_argument("--restart-at", type=float, default=0.25, help="share of turns started; >= 1: no restart")
    parser.add_argument("--rejoin-at", type=float, default=0.5, help="no turn past this share starts before it is back")
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES))
    parser.add_argument(
        "--tokenizer",
        choices=("engine", "local"),
        default="engine",
        help="where the gateways get token ids: the engines' /tokenize, or their own (the tiny model's files)",
    )
    parser.add_argument("--profiles", help="more routing profiles for the gateways (INFERSTACK_ROUTING__PROFILES JSON)")
    parser.add_argument("--out", type=Path)
    parser.set_defaults(**PLANS[pre.parse_known_args()[0].plan])
    args = parser.parse_args()
    emit(asyncio.run(main_async(args)), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
