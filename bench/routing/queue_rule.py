"""A queue-aware rule, tried in the replays before building it: prefer the prefix holder only while its queue is short.

    nice -n 10 .venv/bin/python bench/routing/queue_rule.py [--out queue_rule.json]

The rule as a filter put in front of a profile's own: drop every replica whose engine reports more
than ``k`` waiting requests (as of the last scrape), unless that drops them all. Tried with today's
``precise_prefix`` profile and with search.py's candidate (``precise_prefix`` 30 + ``kv_cache`` 1, slack 3,
waiting weight 0), ``k`` 0 and 1, on the replayed pressure and default plans under five timings.
Not a gateway plugin: a prototype to see whether one is worth writing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

from replay import REAL, Plan, ReplayFleet, load_real, sim_config
from sweep import ORACLE

from inferstack.config import ProfileSpec
from inferstack.scheduling import EndpointLoad, Profile, make_policy
from inferstack.scheduling.types import CycleState

CANDIDATE = ProfileSpec(filters=("bounded_load",), scorers={"precise_prefix": 30.0, "kv_cache": 1.0})
CANDIDATE_KNOBS = {"load_slack": 3.0, "waiting_weight": 0.0}
TIMINGS = ((1.0, 0.0), (1.0, 0.02), (3.0, 0.06), (10.0, 0.0), (0.5, 0.0))


class ShortQueue:
    name: ClassVar[str] = "short_queue"
    kind: ClassVar[Literal["filter"]] = "filter"

    def __init__(self, k: int) -> None:
        self.k = k

    def filter(self, state: CycleState, candidates: list[EndpointLoad]) -> list[EndpointLoad]:
        kept = [c for c in candidates if (c.waiting or 0) <= self.k]
        return kept or list(candidates)


def policies(name: str, k: int | None, knobs: dict[str, Any]) -> list[Profile]:
    out = []
    for _ in range(3):
        p = make_policy(name, {**ORACLE, "candidate": CANDIDATE}, **knobs)
        if k is not None:
            p.filters = (ShortQueue(k), *p.filters)
        out.append(p)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "queue_rule.json")
    a = ap.parse_args(argv)
    started, load = time.monotonic(), os.getloadavg()
    variants: list[tuple[str, str, int | None, dict[str, Any]]] = [
        ("today", "precise_prefix", None, {}),
        ("today_queue_0", "precise_prefix", 0, {}),
        ("today_queue_1", "precise_prefix", 1, {}),
        ("candidate", "candidate", None, CANDIDATE_KNOBS),
        ("candidate_queue_0", "candidate", 0, CANDIDATE_KNOBS),
        ("candidate_queue_1", "candidate", 1, CANDIDATE_KNOBS),
    ]
    rows = []
    for plan in ("results_pressure", "results"):
        report, prompts = load_real(REAL / f"{plan}.json")
        s = report["settings"]
        for slowdown, delay in TIMINGS:
            params, settings = sim_config(s, slowdown, delay)
            row: dict[str, Any] = {"plan": plan, "slowdown": slowdown, "engine_delay": delay}
            for label, name, k, knobs in variants:
                r = ReplayFleet(policies(name, k, knobs), params, Plan(s, prompts), settings).run()
                row[label] = round(r.prefix_hits / r.prefix_queries, 4)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    out = {
        "command": "nice -n 10 .venv/bin/python bench/routing/queue_rule.py " + shlex.join(argv or sys.argv[1:]),
        "method": "replay.py's plans; hit rate = engines' prefix-cache hits / queries (tokens, all traffic)",
        "rows": rows,
        "load_average_1_5_15": [[round(x, 1) for x in la] for la in (load, os.getloadavg())],
        "wall_seconds": round(time.monotonic() - started),
    }
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
