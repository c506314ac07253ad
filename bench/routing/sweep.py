"""Where does ``precise_prefix`` beat round robin by 2x and ``prefix_affinity`` by 1.3x? A sweep in the simulator.

    nice -n 19 .venv/bin/python bench/routing/sweep.py [--duration 300] [--only AXIS ...] [--out FILE]

One factor at a time around a base point (the deployment setup of ``run.py`` on 3 replicas: 3 gateways,
a fifth of the turns direct, one replica restarted), each factor something a real deployment varies:
cache pressure (prefix-cache blocks per replica against the tenants' system prompts), tenants,
turns per conversation, the system prompt's share of a prompt, replicas, direct (foreign) traffic,
the restart, and how a conversation's turns spread over gateway pods. ``--only cache_blocks@8
direct_share@8``: two axes again on 8 replicas (three times the cost per point).

Per point and policy: the replicas' prefix-cache hit rate (all traffic, as the engines' counters),
the routed turns' hit rate, and two ceilings:

- ``oracle_at_send`` (measured in the ``precise_prefix`` run, as ``bench/routing_real`` does): for each
  routed turn, the longest prefix any running replica held when it was sent;
- ``oracle`` policy: a run that always sends a routed turn to the replica holding its longest
  prefix (the ``precise_prefix`` scorer alone, no load bound; ties to the least loaded), its hit rate
  over all traffic like the others'. Greedy, so a ceiling for greedy routing, not a proof of optimum.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from des import FleetSim, RunSettings
from report import summarise
from run import no_cache_capacity
from workload import Workload, WorkloadShape

from inferstack.config import ProfileSpec
from inferstack.scheduling import make_policy
from inferstack_fake_engine.sim import SimParams

HERE = Path(__file__).resolve().parent
POLICIES = ("round_robin", "prefix_affinity", "precise_prefix", "oracle")
ORACLE = {"oracle": ProfileSpec(scorers={"precise_prefix": 1.0})}


@dataclasses.dataclass(frozen=True)
class Point:
    replicas: int = 3
    cache_blocks: int = 6144
    """The replica's KV pool in blocks: its prefix cache is what running requests leave of it (pool.py;
    sweep.json and real_shape.json predate that: there it was a cache beside a 16,384-block pool)."""
    tenants: int = 64
    system_tokens: tuple[int, int] = (2000, 6000)
    turns: tuple[int, int] = (2, 6)
    user_tokens: tuple[int, int] = (50, 300)
    output_tokens: tuple[int, int] = (100, 300)
    gateways: int = 3
    direct_share: float = 0.2
    restart: bool = True
    sticky_gateway: bool = False
    block_size: int = 16
    concurrency: int = 0
    """0: Poisson arrivals at 75% of the no-cache capacity; n: a closed loop of n conversations (des.py)."""
    conversations_per_tenant: int = 0
    """0: tenants drawn at random; n: the real bench's plan (workload.py)."""
    live: int = 0
    """With ``concurrency``: conversations under way at once (des.py's ``RunSettings.live``)."""


BASE = Point()
BASE8 = Point(replicas=8)
# name -> (base, field, values); the base's own value is in each list, so every row has its reference.
AXES: dict[str, tuple[Point, str, list[Any]]] = {
    "cache_blocks": (BASE, "cache_blocks", [1536, 3072, 6144, 12288, 24576, 49152]),
    "tenants": (BASE, "tenants", [8, 16, 64, 256]),
    "turns": (BASE, "turns", [(1, 1), (2, 6), (6, 10), (10, 16)]),
    "system_tokens": (BASE, "system_tokens", [(100, 300), (500, 1500), (2000, 6000), (6000, 10000)]),
    "replicas": (BASE, "replicas", [2, 3, 4, 8]),
    "direct_share": (BASE, "direct_share", [0.0, 0.2, 0.5]),
    "restart": (BASE, "restart", [False, True]),
    "gateways": (BASE, "gateways", [1, 3, 8]),
    "sticky_gateway": (BASE, "sticky_gateway", [False, True]),
    "cache_blocks@8": (BASE8, "cache_blocks", [1536, 6144, 24576]),
    "direct_share@8": (BASE8, "direct_share", [0.0, 0.5]),
}
DEFAULT_AXES = tuple(k for k in AXES if not k.endswith("@8"))
"""8 replicas cost about three times as much per point: run those axes by name (``--only``)."""


def run_point(
    point: Point,
    duration: float,
    warmup: float,
    seed: int,
    knobs: dict[str, Any] | None = None,
    policies: tuple[str, ...] = POLICIES,
    profiles: dict[str, ProfileSpec] | None = None,
) -> dict[str, Any]:
    """``knobs``: routing settings for every policy (``make_policy``'s), e.g. ``{"load_factor": 2.0}``;
    ``profiles``: more policies by name (as ``INFERSTACK_ROUTING__PROFILES``)."""
    shape = WorkloadShape(
        tenants=point.tenants,
        system_tokens=point.system_tokens,
        turns=point.turns,
        user_tokens=point.user_tokens,
        output_tokens=point.output_tokens,
        conversations_per_tenant=point.conversations_per_tenant,
    )
    params = SimParams(num_blocks=point.cache_blocks, block_size=point.block_size)
    capacity, means = no_cache_capacity(params, Workload(shape, seed), point.replicas)
    quarter = duration / 4
    settings = RunSettings(
        replicas=point.replicas,
        conversation_rate=0.75 * capacity / means["mean_turns"],
        warmup=warmup,
        duration=duration,
        seed=seed,
        gateways=point.gateways,
        direct_share=point.direct_share,
        restart=(0, warmup + quarter, quarter) if point.restart else None,
        sticky_gateway=point.sticky_gateway,
        concurrency=point.concurrency,
        live=point.live,
    )
    system_blocks = sum(len(p) for p in Workload(shape, seed).system_prompts) / 4 / params.block_size
    out: dict[str, Any] = {
        "point": dataclasses.asdict(point),
        "mean_prompt_tokens": round(means["mean_prompt_tokens"]),
        "cache_over_system_prompts": round(point.cache_blocks / system_blocks, 3),
        "cache_over_mean_prompt": round(point.cache_blocks * params.block_size / means["mean_prompt_tokens"], 1),
        "policies": {},
    }
    for name in policies:
        gateways = [make_policy(name, {**ORACLE, **(profiles or {})}, **(knobs or {})) for _ in range(point.gateways)]
        r = FleetSim(gateways, params, Workload(shape, seed), settings).run()
        summary = summarise(r, params)
        out["policies"][name] = {
            "hit_rate": round(r.prefix_hits / r.prefix_queries, 4) if r.prefix_queries else 0.0,
            "routed_hit_rate": round(r.routed_cached_tokens / r.routed_prompt_tokens, 4)
            if r.routed_prompt_tokens
            else 0.0,
            "oracle_at_send": round(r.oracle_cached_tokens / r.routed_prompt_tokens, 4)
            if r.routed_prompt_tokens
            else 0.0,
            "reasons": dict(sorted(r.reasons.items())),
            "load_max_over_mean": summary["replica_load_max_over_mean"],
            "ttft_p90": summary["ttft_p90"],
        }
    p = out["policies"]
    if set(POLICIES) - set(p):
        return out

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 3) if b else None

    rr, pa, pp, oracle = (p[n]["hit_rate"] for n in POLICIES)
    out["precise_vs_round_robin"] = ratio(pp, rr)
    out["precise_vs_prefix_affinity"] = ratio(pp, pa)
    out["oracle_vs_round_robin"] = ratio(oracle, rr)
    out["oracle_vs_prefix_affinity"] = ratio(oracle, pa)
    out["precise_vs_oracle"] = ratio(pp, oracle)
    out["precise_routed_vs_oracle_at_send"] = ratio(
        p["precise_prefix"]["routed_hit_rate"], p["precise_prefix"]["oracle_at_send"]
    )
    return out


def describe(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "-".join(str(v) for v in value)
    return str(value)


def parse_point(pairs: list[str]) -> Point:
    """``tenants=48 system_tokens=800,800 restart=false``: the base point with those fields changed."""
    kinds = {f.name: type(getattr(BASE, f.name)) for f in dataclasses.fields(Point)}
    changes: dict[str, Any] = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        if name not in kinds:
            raise SystemExit(f"--point: no field {name!r} (fields: {', '.join(kinds)})")
        kind = kinds[name]
        if kind is tuple:
            changes[name] = tuple(int(v) for v in text.split(","))
        elif kind is bool:
            changes[name] = text.lower() in ("1", "true", "yes")
        else:
            changes[name] = kind(text)
    return dataclasses.replace(BASE, **changes)


def one_point(a: argparse.Namespace, argv: list[str] | None) -> int:
    started, before = time.monotonic(), os.getloadavg()
    profiles = {k: ProfileSpec(**v) for k, v in (a.profiles or {}).items()}
    result = run_point(parse_point(a.point), a.duration, a.warmup, a.seed, a.knobs, tuple(a.policies), profiles)
    result["command"] = "nice -n 19 .venv/bin/python bench/routing/sweep.py " + shlex.join(argv or sys.argv[1:])
    result["load_average_1_5_15"] = [[round(x, 1) for x in la] for la in (before, os.getloadavg())]
    result["wall_seconds"] = round(time.monotonic() - started)
    text = json.dumps(result, indent=2) + "\n"
    if a.out:
        a.out.write_text(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=300.0)
    p.add_argument("--warmup", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", nargs="*", choices=list(AXES), help="axes to run (default: all but the @8 ones)")
    p.add_argument("--point", nargs="+", metavar="FIELD=VALUE", help="one point instead of a sweep (needs --out)")
    p.add_argument("--out", type=Path, default=None, help="default: sweep.json here (a sweep), stdout (a point)")
    p.add_argument("--policies", nargs="+", default=list(POLICIES), help="--point: these policies")
    p.add_argument("--knobs", type=json.loads, default=None, help="--point: routing settings for every policy (JSON)")
    p.add_argument("--profiles", type=json.loads, default=None, help="--point: more profiles (JSON, by name)")
    a = p.parse_args(argv)
    if a.point:
        return one_point(a, argv)
    a.out = a.out or HERE / "sweep.json"
    axes = {k: AXES[k] for k in (a.only or DEFAULT_AXES)}
    started, load = time.monotonic(), [os.getloadavg()]
    rows: dict[str, list[dict[str, Any]]] = {}
    done: dict[Point, dict[str, Any]] = {}
    report = {
        "command": "nice -n 19 .venv/bin/python bench/routing/sweep.py " + shlex.join(argv or sys.argv[1:]),
        "method": "discrete-event simulation (des.py), one factor at a time around a base point; load 0.75 of"
        " the fleet's no-cache capacity at every point; hit rates are prefix-cache hits / queries in tokens",
        "base": dataclasses.asdict(BASE),
        "base8": dataclasses.asdict(BASE8),
        "duration": a.duration,
        "warmup": a.warmup,
        "seed": a.seed,
        "load_average_1_5_15": [[round(x, 1) for x in la] for la in load],
        "axes": rows,
    }
    for axis, (base, field, values) in axes.items():
        rows[axis] = []
        for value in values:
            point = dataclasses.replace(base, **{field: value})
            if point not in done:
                done[point] = run_point(point, a.duration, a.warmup, a.seed)
            row = {"axis": axis, "value": describe(value), **done[point]}
            rows[axis].append(row)
            print(
                f"{axis:16} {describe(value):>10}  x RR {row['precise_vs_round_robin']}  x PA"
                f" {row['precise_vs_prefix_affinity']}  oracle x RR {row['oracle_vs_round_robin']}"
                f"  x PA {row['oracle_vs_prefix_affinity']}  vs oracle {row['precise_vs_oracle']}",
                file=sys.stderr,
            )
        checkpoint(report, load, started, a.out)  # after every axis: a long sweep keeps what it did
    return 0


def checkpoint(report: dict[str, Any], load: list[tuple[float, float, float]], started: float, out: Path) -> None:
    """Write ``report`` as it stands, with the load averages sampled so far and now, and the wall time."""
    load.append(os.getloadavg())
    report["load_average_1_5_15"] = [[round(x, 1) for x in la] for la in load]
    report["wall_seconds"] = round(time.monotonic() - started)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
