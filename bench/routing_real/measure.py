"""What the real-engine routing bench measures and reports: the engines' prefix-cache counters, the
gateways' decision and tokenizer counters, each policy's figures from its turn records, and the run's
summary. Scraping is here; the arithmetic on what was scraped is pure and tested without engines
(tests/test_measure.py).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import statistics
import sys
from typing import TYPE_CHECKING, Any

import aiohttp
from prom_text import scrape, total
from turn_log import Removals, why_lost

import inferstack_devstack as devstack
from inferstack.kvcache.blocks import prompt_block_hashes

if TYPE_CHECKING:  # bench/routing has a workload.py too: a test session may hold that one under this name
    from workload import Route

COUNTERS = (
    "vllm:prefix_cache_hits_total",
    "vllm:prefix_cache_queries_total",
    "vllm:prompt_tokens_total",
    "vllm:num_preemptions_total",  # a preempted request queries the cache again when it resumes
)
TIMINGS = tuple(
    f"vllm:{name}_seconds_{part}"
    for name in ("request_queue_time", "request_prefill_time", "time_to_first_token")
    for part in ("sum", "count")
)
"""Where a request's time to first token goes inside the engine: waiting in the scheduler's queue, its
prefill, and the engine's own TTFT, from the request's arrival at vLLM's front end (``engine_timing``)."""
PHASES = ("all_up", "one_down", "back_cold")
BLOCK = 128  # the CPU engine's KV block size, in tokens

Samples = dict[tuple[str, str], float]
Counters = dict[str, float]
Record = dict[str, Any]


async def metrics(session: aiohttp.ClientSession, url: str) -> Samples:
    async with session.get(url + "/metrics") as resp:
        return scrape(await resp.text())


def counters(samples: Samples) -> Counters:
    return {name: total(samples, name) for name in COUNTERS + TIMINGS}


def ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b else 0.0


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[int(q * (len(ordered) - 1))], 4) if ordered else None


def labels_of(text: str) -> dict[str, str]:
    """``a="1",b="2"`` (a scraped sample's label text) as a dict."""
    pairs = (kv.split("=", 1) for kv in text.rstrip("}").split(","))
    return {k: v.strip('"') for k, v in pairs}


async def ready_replicas(session: aiohttp.ClientSession, gateways: list[devstack.Service]) -> list[float]:
    """How many replicas each gateway counts ready (``inferstack_upstream_replicas{state="ready"}``)."""
    ready = []
    for g in gateways:
        samples = await metrics(session, g.admin_url)
        ready.append(
            sum(
                v
                for (n, labels), v in samples.items()
                if n == "inferstack_upstream_replicas" and 'state="ready"' in labels
            )
        )
    return ready


async def decisions(session: aiohttp.ClientSession, gateways: list[devstack.Service]) -> dict[tuple[str, str], float]:
    """The gateways' routing decisions so far, summed, by (policy, reason)."""
    out: dict[tuple[str, str], float] = {}
    for g in gateways:
        for (name, labels), value in (await metrics(session, g.admin_url)).items():
            if name == "inferstack_routing_decisions_total":
                parts = labels_of(labels)
                key = (parts["policy"], parts["reason"])
                out[key] = out.get(key, 0.0) + value
    return out


async def tokenizer_checks(session: aiohttp.ClientSession, gateways: list[devstack.Service]) -> dict[str, float]:
    """The gateways' local-tokenizer checks by outcome (``--tokenizer local``), and how many use it."""
    out: dict[str, float] = {}
    for g in gateways:
        for (name, labels), value in (await metrics(session, g.admin_url)).items():
            if name == "inferstack_kv_tokenizer_checks_total":
                outcome = labels_of(labels)["outcome"]
                out[outcome] = out.get(outcome, 0.0) + value
            elif name == "inferstack_kv_tokenizer_local":
                out["gateways_local"] = out.get("gateways_local", 0.0) + value
    return out


def per_replica(
    before: dict[str, Counters], after: dict[str, Counters], lost: dict[str, Counters]
) -> dict[str, dict[str, float]]:
    """Each replica's counters over one policy's run. A restarted replica's new process counts from 0:
    ``lost`` holds what its old process counted during the run (taken just before the stop)."""
    out = {}
    for url, now in after.items():
        base = {k: -before[url][k] for k in COUNTERS + TIMINGS} if url not in lost else lost[url]
        d = {k: now[k] + base[k] for k in COUNTERS + TIMINGS}
        hits, queries = d["vllm:prefix_cache_hits_total"], d["vllm:prefix_cache_queries_total"]
        out[url] = {
            "hit_rate": ratio(hits, queries),
            "hits": hits,
            "queries": queries,
            "prompt_tokens": d["vllm:prompt_tokens_total"],
            "preemptions": d["vllm:num_preemptions_total"],
            **{k.removeprefix("vllm:"): round(d[k], 3) for k in TIMINGS},
        }
    return out


def engine_timing(replicas: dict[str, dict[str, float]], records: list[Record]) -> dict[str, float | None]:
    """Mean seconds per request over all traffic (routed and direct): the client's TTFT, the engines'
    (from arrival at vLLM's front end to the first token back there), and the engines' queue and
    prefill. The client's less the engines' is the gateway and the hops. The engines' less queue and
    prefill is vLLM's front end both ways: in (the chat template, tokenizing, the hand-over to the
    engine core) and out (the first token back). Its inbound part is how long a routing decision waits
    before the engine core can allocate for it, so this bounds that wait from above."""

    def mean(name: str) -> float:
        count = sum(r.get(f"{name}_seconds_count", 0.0) for r in replicas.values())
        return sum(r.get(f"{name}_seconds_sum", 0.0) for r in replicas.values()) / count if count else math.nan

    ttfts = [r["ttft"] for r in records if r.get("ttft") is not None]
    client = statistics.mean(ttfts) if ttfts else math.nan
    engine, queue, prefill = mean("time_to_first_token"), mean("request_queue_time"), mean("request_prefill_time")
    out = {
        "client_ttft_s": client,
        "engine_ttft_s": engine,
        "queue_s": queue,
        "prefill_s": prefill,
        "before_the_engine_s": client - engine,
        "front_end_s": engine - queue - prefill,
    }
    return {k: None if math.isnan(v) else round(v, 4) for k, v in out.items()}


def policy_report(
    policy: str,
    records: list[Record],
    replicas: dict[str, dict[str, float]],
    decided: dict[tuple[str, str], float],
    now: dict[tuple[str, str], float],
    seconds: float,
    restart: dict[str, Any] | None,
) -> dict[str, Any]:
    """One policy's figures from its turn records, its replicas' counters, the gateways' decisions
    before (``decided``) and after (``now``) the run, its duration and its restart's account."""
    hits = sum(r["hits"] for r in replicas.values())
    queries = sum(r["queries"] for r in replicas.values())
    loads = [r["prompt_tokens"] for r in replicas.values()]
    ok = [r for r in records if "error" not in r and "cached" in r]
    routed = [r for r in ok if not r["direct"]]
    phases = {}
    for phase in PHASES:
        rs = [r for r in routed if r["phase"] == phase]
        phases[phase] = {
            "requests": len(rs),
            "routed_hit_rate": ratio(sum(r["cached"] for r in rs), sum(r["prompt_tokens"] for r in rs)),
            "oracle_hit_rate": ratio(sum(r["oracle"] for r in rs), sum(r["prompt"] for r in rs)),
        }
    return {
        "requests": len(records),
        "routed_requests": len(routed),
        "direct_requests": len([r for r in ok if r["direct"]]),
        "errors": len(records) - len(ok),
        "error_samples": sorted({r["error"] for r in records if "error" in r})[:3],
        "seconds": round(seconds, 1),
        "hit_rate": ratio(hits, queries),
        "routed_hit_rate": ratio(sum(r["cached"] for r in routed), sum(r["prompt_tokens"] for r in routed)),
        "oracle_hit_rate": ratio(sum(r["oracle"] for r in routed), sum(r["prompt"] for r in routed)),
        "hits": hits,
        "queries": queries,
        "preemptions": sum(r["preemptions"] for r in replicas.values()),
        "ttft_p50_s": percentile([r["ttft"] for r in routed], 0.5),
        "ttft_p90_s": percentile([r["ttft"] for r in routed], 0.9),
        "load_max_over_mean": round(max(loads) / statistics.mean(loads), 3) if sum(loads) else None,
        "phases": phases,
        "engine_timing": engine_timing(replicas, ok),
        "restart": restart,
        "per_replica": replicas,
        "decisions": {
            r: now[(p, r)] - decided.get((p, r), 0.0)
            for (p, r) in now
            if p == policy and now[(p, r)] > decided.get((p, r), 0.0)
        },
    }


def annotate(
    records: list[Record],
    access: dict[str, dict[str, Any]],
    removals: Removals,
    tokens: dict[tuple[int, int], list[int]],
) -> None:
    """Each turn's record gets the gateway's choice (upstream, reason, prefix blocks) from the access
    log and, where the chosen replica held more than it hit, ``lost_cause`` (``turn_log.why_lost``)."""
    for r in records:
        entry = access.get(r["id"], {})
        r.update({k: entry.get(k) for k in ("upstream", "reason", "prefix_blocks")})
        up = r["upstream"]
        if up in r.get("held", {}) and "cached" in r:
            c, t = map(int, r["id"].split("/")[1:])
            chain = prompt_block_hashes(tokens[(c, t)], BLOCK)
            r["lost_cause"] = why_lost(removals, up, chain, r["held"][up] // BLOCK, r["cached"] // BLOCK, r["sent"])


def vs(a: dict[str, Any], b: dict[str, Any], key: str, other: str | None = None) -> float | None:
    """``a[key] / b[other or key]``, rounded; None if either policy did not run or the divisor is 0."""
    return round(a[key] / b[other or key], 3) if a and b and b[other or key] else None


def summary(
    args: argparse.Namespace,
    results: dict[str, dict[str, Any]],
    tokens: dict[tuple[int, int], list[int]],
    plan: dict[tuple[int, int], Route],
    system_tokens: list[int],
    load: list[tuple[float, float, float]],
    engine_rss_mib: dict[str, float],
) -> dict[str, Any]:
    """The run's JSON: settings, the workload's shape in tokens, every policy's figures and the ratios
    between them."""
    prompts = [len(t) for t in tokens.values()]
    rr = results.get("round_robin", {})
    pa = results.get("prefix_affinity", {})
    pp = results.get("precise_prefix", {})
    kv_tokens = args.kv_blocks * BLOCK
    return {
        "command": "make bench-routing-real  # " + shlex.join(sys.argv[1:]),
        "note": (
            "hit rates move between runs of one plan (the default plan by up to 8 points a policy, the pressure"
            " plan more: docs/routing.md), so compare policies within a run and over several runs; TTFT was"
            " measured on a shared, loaded 2-core machine: noise"
        ),
        "settings": {**vars(args), "out": str(args.out) if args.out else None},
        "gateway_environment": {k: v for k, v in os.environ.items() if k.startswith("INFERSTACK_")},
        "workload": {
            "turns": len(prompts),
            "routed_turns": sum(1 for r in plan.values() if r.gateway is not None),
            "direct_turns": sum(1 for r in plan.values() if r.gateway is None),
            "prompt_tokens_mean": round(statistics.mean(prompts)),
            "prompt_tokens_max": max(prompts),
            "prompt_tokens_per_policy": sum(prompts),
            "kv_tokens_per_replica": kv_tokens,
            "system_prompt_tokens_mean": round(statistics.mean(system_tokens)),
            "kv_over_system_prompts": round(kv_tokens / sum(system_tokens), 3),
            "kv_over_prompt_max": round(kv_tokens / max(prompts), 2),
        },
        "load_average_1_5_15": [[round(x, 1) for x in la] for la in load],
        "engine_rss_mib": engine_rss_mib,
        "policies": results,
        "precise_vs_round_robin": vs(pp, rr, "hit_rate"),
        "precise_vs_prefix_affinity": vs(pp, pa, "hit_rate"),
        "precise_vs_oracle": vs(pp, pp, "routed_hit_rate", "oracle_hit_rate"),
        "routed_precise_vs_round_robin": vs(pp, rr, "routed_hit_rate"),
        "routed_precise_vs_prefix_affinity": vs(pp, pa, "routed_hit_rate"),
    }
