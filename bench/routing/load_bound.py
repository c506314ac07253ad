"""Which load bound? ``bounded_load``'s rule compared in the simulator on 2, 3 and 4 replicas.

    nice -n 19 .venv/bin/python bench/routing/load_bound.py [--duration 300] [--out bench/routing/load_bound.json]

Each gateway pod counts only its own requests in flight, so at the deployment setup's small counts
``ceil(1.5 x mean)`` binds at 1 on 3 replicas (docs/routing.md, "Where precise falls short of the
oracle"). The rules compared, as ``make_policy`` settings:

- ``factor_1.5``: the bound ``ceil(1.5 x mean)`` alone (``load_slack`` 0: the rule before the slack);
- ``factor_1.5_slack_1``: ``max(ceil(1.5 x mean), ceil(mean + 1))`` (the default since);
- ``factor_2.0``: ``ceil(2 x mean)`` (loose at small counts, but on 2 replicas it never binds).

On three shapes (``sweep.Point``s, the deployment setup: 3 gateways, a fifth of the turns direct, one
replica restarted): the sweep's base (64 tenants, Poisson arrivals at 75% of the no-cache capacity),
the same with 2 tenants (two hot prefixes: what keeps one replica from taking everything is the
bound), and the real-engine bench's shape (``real_shape.json``: a closed loop of 5 conversations; its
``pressure`` plan: 36 tenants, 12 conversations at once).
Per rule and policy: hit rate, routed hit rate against the oracle at send time, max/mean in-flight
requests per replica (time-averaged), TTFT p90 (virtual seconds) and the decisions' reasons.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from sweep import BASE, Point, checkpoint, run_point

HERE = Path(__file__).resolve().parent
RULES: dict[str, dict[str, float]] = {
    "factor_1.5": {"load_factor": 1.5, "load_slack": 0.0},
    "factor_1.5_slack_1": {"load_factor": 1.5, "load_slack": 1.0},
    "factor_2.0": {"load_factor": 2.0, "load_slack": 0.0},
}
REAL = Point(
    cache_blocks=40,
    block_size=128,
    tenants=12,
    conversations_per_tenant=3,
    system_tokens=(800, 800),
    user_tokens=(90, 90),
    output_tokens=(90, 90),
    turns=(6, 6),
    concurrency=5,
)
SHAPES: dict[str, tuple[Point, float]] = {
    "sweep_base": (BASE, 300.0),
    "two_hot_tenants": (dataclasses.replace(BASE, tenants=2), 300.0),
    "real_shape": (REAL, 1200.0),
    "pressure_shape": (dataclasses.replace(REAL, tenants=36, conversations_per_tenant=1, concurrency=12), 1200.0),
}
POLICIES = ("prefix_affinity", "precise_prefix")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES)[:3])
    p.add_argument("--scale", type=float, default=1.0, help="times each shape's virtual duration")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "load_bound.json")
    a = p.parse_args(argv)
    started, load = time.monotonic(), [os.getloadavg()]
    rows: list[dict[str, Any]] = []
    report = {
        "command": "nice -n 19 .venv/bin/python bench/routing/load_bound.py " + shlex.join(argv or sys.argv[1:]),
        "rules": RULES,
        "rows": rows,
    }
    for shape in a.shapes:
        base, duration = SHAPES[shape]
        for replicas in a.replicas:
            point = dataclasses.replace(base, replicas=replicas)
            ceiling = run_point(point, duration * a.scale, 60.0, a.seed, policies=("oracle",))
            for rule, knobs in RULES.items():
                r = run_point(point, duration * a.scale, 60.0, a.seed, knobs=knobs, policies=POLICIES)
                row = {
                    "shape": shape,
                    "replicas": replicas,
                    "rule": rule,
                    "oracle_policy_hit_rate": ceiling["policies"]["oracle"]["hit_rate"],
                    "policies": r["policies"],
                }
                rows.append(row)
                print(
                    f"{shape:16} {replicas} {rule:20} oracle {row['oracle_policy_hit_rate']:.3f}  "
                    + "  ".join(
                        f"{n}: hit {v['hit_rate']:.3f} max/mean {v['load_max_over_mean']:.2f}"
                        f" p90 {v['ttft_p90']:.3f} lb {v['reasons'].get('load_bound', 0)}"
                        for n, v in r["policies"].items()
                    ),
                    file=sys.stderr,
                    flush=True,
                )
            checkpoint(report, load, started, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
