"""``make bench-routing-real``: routing policies on real vLLM CPU replicas, judged by the engines' own counters.

    .venv/bin/python bench/routing_real/run.py [--plan default|pressure|interleaved] [--replicas 3] [--out FILE]

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
``--concurrency`` turns in flight, one per conversation under way (or ``--live`` conversations under
way, each turn queued behind the others'), and reports:

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
Hit rates depend on timing less than TTFT does, so they mean something on a loaded machine, but not
nothing: the interleaving of concurrent conversations moves them between runs of one plan (the default
plan by up to 8 points a policy, the pressure plan more; docs/routing.md), so one run does not resolve a
few points. TTFT on a shared 2-core machine is noise.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The bench's modules, by responsibility: workload.py (the plan), deployment.py (engines, gateways,
# the bench's KV-event subscription), policy_run.py (one policy's run of the plan), measure.py (the
# counters and the report), turn_log.py (where each routed turn's tokens went).
from deployment import deployed, warm_up  # noqa: E402
from measure import annotate, summary, tokenizer_checks  # noqa: E402
from policy_run import Bench  # noqa: E402
from results_file import emit  # noqa: E402
from turn_log import access_lines, where_tokens_went  # noqa: E402

from inferstack.config.routing import KVEvents  # noqa: E402
from inferstack_devstack import signals_stop  # noqa: E402

POLICIES = ("round_robin", "prefix_affinity", "precise_prefix")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    load = [os.getloadavg()]
    async with deployed(args) as deployment:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
            await warm_up(session, deployment)
            bench = Bench(session, deployment, args)
            await bench.tokenize_all()
            results = {}
            for p in args.policies:
                results[p] = await bench.run_policy(p)
                load.append(os.getloadavg())
                results[p]["tokenizer_checks_after"] = await tokenizer_checks(session, deployment.gateways)
                shown = {k: results[p][k] for k in ("hit_rate", "routed_hit_rate", "oracle_hit_rate", "errors")}
                print(p, json.dumps(shown), file=sys.stderr)
        # The gateways' access logs, complete once the last turn is answered (flushed per line).
        access = access_lines(deployment.gateways)
        for p, records in bench.records.items():
            annotate(records, access, bench.removals[p], bench.tokens)
            results[p]["where_tokens_went"] = where_tokens_went(records, access)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)  # emit() makes it too, but only after this
            turns = "".join(json.dumps(r) + "\n" for rs in bench.records.values() for r in rs)
            args.out.with_suffix(".turns.jsonl.gz").write_bytes(gzip.compress(turns.encode(), mtime=0))
        return summary(args, results, bench.tokens, bench.plan, bench.system_tokens, load, deployment.engine_rss_mib)


PLANS: dict[str, dict[str, Any]] = {
    "default": {},
    "pressure": {"tenants": 36, "conversations": 1, "concurrency": 12},
    "interleaved": {"tenants": 36, "conversations": 1, "concurrency": 5, "live": 10},
}
"""Named plans (``--plan``; explicit flags still override them). ``default``: one replica's KV cache is
0.53 of the 12 tenants' system prompts, 5 conversations at a time. ``pressure``: the same prompts and
turn count (36 six-turn conversations), one conversation per tenant, so one replica's cache is 0.18 of
the 36 system prompts, and 12 conversations at a time: in this closed loop the live conversations are
the working set, and the simulator at this bench's shape reaches the goals only with both
(bench/routing/real_shape.json, docs/routing.md). ``interleaved``: the pressure plan's conversations,
10 under way but 5 turns in flight, each turn queued behind the other live conversations' as a
user's think time would: the same working set as ten at once without the engine queues that evict a
waiting turn's history (bench/routing/live.json, docs/routing.md)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The settings: a named plan's values, then the flags given (which override them)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plan", choices=list(PLANS), default="default", help="a named plan (flags override it)")
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0], parents=[pre])
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
    parser.add_argument("--concurrency", type=int, default=5, help="turns in flight at once (workers)")
    parser.add_argument(
        "--live",
        type=int,
        default=0,
        help="conversations under way at once, each turn queued behind the others' (0: --concurrency,"
        " every worker sends one conversation's turns back to back)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES))
    parser.add_argument(
        "--tokenizer",
        choices=("engine", "local"),
        default=KVEvents.model_fields["tokenizer"].default,
        help="where the gateways get token ids: the engines' /tokenize, or their own (the tiny model's files);"
        " default: the gateway's, local (engine before session 16; results record it in gateway_environment)",
    )
    parser.add_argument(
        "--engine-arg",
        action="append",
        help="a vLLM flag every replica starts with, repeatable"
        " (e.g. --engine-arg=--scheduling-policy --engine-arg=priority)",
    )
    parser.add_argument("--profiles", help="more routing profiles for the gateways (INFERSTACK_ROUTING__PROFILES JSON)")
    parser.add_argument("--out", type=Path)
    parser.set_defaults(**PLANS[pre.parse_known_args(argv)[0].plan])
    args = parser.parse_args(argv)
    if args.live and args.live < args.concurrency:
        parser.error("--live must be 0 or at least --concurrency")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    emit(asyncio.run(main_async(args)), args.out)
    return 0


if __name__ == "__main__":
    with signals_stop():  # SIGTERM stops the engines and gateways too
        raise SystemExit(main())
