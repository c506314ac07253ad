"""``make bench-routing``: compare routing policies on a simulated fleet under a shared-prefix workload.

    .venv/bin/python bench/routing/run.py [--duration 300] [--load 0.75] [--no-plot]

Runs every policy twice: on the plain setup (one gateway that routes every request, replicas that
never restart), then on the ``deployment`` setup that ``bench/routing_real`` runs on real engines
(``--gateways`` gateway replicas with their own memories, ``--direct-share`` of turns past every
gateway, one replica restarted a quarter into the measured window and back, cold, a quarter later).
Prints tables and JSON; writes results.json and plot.png (the plain setup) next to this file. See README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from des import FleetSim, RunSettings
from report import plot, summarise, table
from workload import Workload, WorkloadShape

from inferstack.scheduling import make_policy
from inferstack_fake_engine.sim import SimParams

HERE = Path(__file__).resolve().parent
POLICIES = ("round_robin", "least_load", "prefix_affinity", "precise_prefix")
# One replica: the simulator's defaults, with a KV pool of 8,192 blocks (131k tokens): what running
# requests leave of it is the prefix cache (pool.py), under a third of all tenants' system prompts,
# so no replica can cache everything and placement matters.
REPLICA = SimParams(num_blocks=8192)


def no_cache_capacity(params: SimParams, workload: Workload, replicas: int) -> tuple[float, dict[str, float]]:
    """Turns per second the fleet sustains if no prompt token is ever cached, at full batches."""
    prompt, output, turns = workload.mean_turn_tokens()
    full_step = params.step_base + params.decode_per_seq * params.max_num_seqs
    seconds_per_turn = params.prefill_per_token * prompt + full_step * output / params.max_num_seqs
    return replicas / seconds_per_turn, {
        "mean_prompt_tokens": prompt,
        "mean_output_tokens": output,
        "mean_turns": turns,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=8)
    p.add_argument(
        "--load",
        type=float,
        default=0.75,
        help="offered load as a share of the fleet's capacity without prefix caching",
    )
    p.add_argument("--duration", type=float, default=300.0, help="measured virtual seconds")
    p.add_argument("--warmup", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument(
        "--load-factor", type=float, default=None, help="bounded-load c for prefix_affinity (default: the policy's own)"
    )
    p.add_argument("--gateways", type=int, default=3, help="deployment setup: gateway replicas")
    p.add_argument("--direct-share", type=float, default=0.2, help="deployment setup: turns sent past the gateways")
    p.add_argument("--no-deployment", action="store_true", help="only the plain setup")
    p.add_argument("--out", type=Path, default=HERE / "results.json")
    p.add_argument("--plot", type=Path, default=HERE / "plot.png")
    p.add_argument("--no-plot", action="store_true")
    a = p.parse_args(argv)

    shape = WorkloadShape()
    capacity, means = no_cache_capacity(REPLICA, Workload(shape, a.seed), a.replicas)
    turn_rate = a.load * capacity
    settings = RunSettings(
        replicas=a.replicas,
        conversation_rate=turn_rate / means["mean_turns"],
        warmup=a.warmup,
        duration=a.duration,
        seed=a.seed,
    )

    def run_all(settings: RunSettings) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for name in a.policies.split(","):
            started = time.monotonic()
            knobs = {"load_factor": a.load_factor} if name == "prefix_affinity" and a.load_factor else {}
            policies = [make_policy(name, **knobs) for _ in range(settings.gateways)]
            sim = FleetSim(policies, REPLICA, Workload(shape, a.seed), settings)
            summary = summarise(sim.run(), REPLICA)
            summary["wall_seconds"] = round(time.monotonic() - started, 1)
            results.append(summary)
            print(f"  {name} ({settings.gateways} gateways): done in {summary['wall_seconds']} s", file=sys.stderr)
        return results

    results = run_all(settings)

    report: dict[str, Any] = {
        "setup": {
            "replicas": a.replicas,
            "offered_load": a.load,
            "turns_per_second": round(turn_rate, 3),
            "no_cache_capacity_turns_per_second": round(capacity, 3),
            "conversations_per_second": round(settings.conversation_rate, 3),
            "warmup_seconds": a.warmup,
            "measured_seconds": a.duration,
            "seed": a.seed,
            "workload": dataclasses.asdict(shape) | {k: round(v, 1) for k, v in means.items()},
            "replica": dataclasses.asdict(REPLICA),
            "method": "discrete-event simulation in virtual time; replicas are "
            "inferstack_fake_engine.sim.ReplicaModel, routing is inferstack.scheduling",
        },
        "results": results,
    }
    base = next((r for r in results if r["policy"] == "round_robin"), None)
    pa = next((r for r in results if r["policy"] == "prefix_affinity"), None)
    if base and pa:
        report["prefix_affinity_vs_round_robin"] = {
            "ttft_p90_ratio": round(base["ttft_p90"] / pa["ttft_p90"], 2),
            "throughput_ratio": round(pa["output_tokens_per_s"] / base["output_tokens_per_s"], 3),
        }
    if not a.no_deployment:
        quarter = a.duration / 4
        deployment = dataclasses.replace(
            settings, gateways=a.gateways, direct_share=a.direct_share, restart=(0, a.warmup + quarter, quarter)
        )
        report["deployment"] = {
            "setup": {
                "gateways": a.gateways,
                "direct_share": a.direct_share,
                "restart": {"replica": 0, "at_seconds": a.warmup + quarter, "down_seconds": quarter},
                "method": "as above; each gateway its own policy instance, precise_prefix's KV index shared "
                "(every gateway reads the same events); routed turns spread over gateways at random",
            },
            "results": run_all(deployment),
        }
        print(table(report["deployment"]["results"]))
    print(table(results))
    print(json.dumps(report, indent=2))
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    if not a.no_plot:
        plot(results, report["setup"], a.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
