"""Many conversations live, few turns in flight: the real bench's pressure shape in other closed loops.

    nice -n 19 .venv/bin/python bench/routing/live.py [--loops 12x12 5x5 5x8 5x10 ...] [--seeds 1 2 3]
        [--duration 1200] [--out bench/routing/live.json]

The ``pressure`` plan of ``bench/routing_real`` puts its cache pressure in the engines' queues: twelve
conversations at once, each sending its next turn as soon as the last is answered, so four turns
wait on each replica and vLLM's LRU takes a waiting turn's history before its prefill (the send-time
oracle is then out of any policy's reach: docs/routing.md). A loop ``CxL`` keeps ``L`` conversations
under way with only ``C`` turns in flight: a conversation's next turn joins the back of a queue of
ready turns (des.py's ``RunSettings.live``), as its user would read and type. The working set grows
with ``L``, the queues with ``C``.

Every point is the pressure plan's shape (``load_bound.REAL`` with 36 tenants of one conversation:
3 replicas of 40 blocks of 128 tokens, 800-token system prompts, six turns, the deployment's
conditions: 3 gateways, a fifth of the turns direct, one replica restarted) on the one-pool
simulator, for each seed. Per point and policy: hit rate (all traffic, as the engines count it),
routed hit rate and the send-time oracle, and the ratios the issue asks of ``precise_prefix``
(``replay.ratios``: ``vs_oracle`` is against the oracle policy).
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

from load_bound import REAL
from replay import ratios
from sweep import POLICIES, checkpoint, run_point

HERE = Path(__file__).resolve().parent
PRESSURE = dataclasses.replace(REAL, tenants=36, conversations_per_tenant=1)
LOOPS = ("12x12", "5x5", "5x6", "5x8", "5x9", "5x10", "5x12", "4x10")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loops", nargs="+", default=list(LOOPS), help="CONCURRENCYxLIVE")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--duration", type=float, default=1200.0, help="virtual seconds measured, after 60 of warm-up")
    p.add_argument("--out", type=Path, default=HERE / "live.json")
    a = p.parse_args(argv)
    started, load = time.monotonic(), [os.getloadavg()]
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "command": "nice -n 19 .venv/bin/python bench/routing/live.py " + shlex.join(argv or sys.argv[1:]),
        "point": dataclasses.asdict(PRESSURE),
        "rows": rows,
    }
    for loop in a.loops:
        concurrency, live = (int(x) for x in loop.split("x"))
        for seed in a.seeds:
            point = dataclasses.replace(PRESSURE, concurrency=concurrency, live=live)
            r = run_point(point, a.duration, 60.0, seed, policies=POLICIES)
            row = {"concurrency": concurrency, "live": live, "seed": seed, "ratios": ratios(r["policies"])}
            row["policies"] = r["policies"]
            rows.append(row)
            hits = "  ".join(f"{n} {v['hit_rate']:.3f}" for n, v in r["policies"].items())
            print(f"{loop:6} seed {seed}  {hits}  {json.dumps(row['ratios'])}", file=sys.stderr, flush=True)
        checkpoint(report, load, started, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
