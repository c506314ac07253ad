"""Figures docs/routing.md quotes from the committed pressure-plan (session 17) and interleaved-plan
(session 19) runs, recomputed.

    .venv/bin/python bench/routing_real/pressure_tally.py [--out FILE]

- ``stable_phases``: per run with both policies, precise_prefix / prefix_affinity over the routed
  turns of the two phases with every replica up (``all_up`` and ``back_cold``, each phase's routed hit
  rate weighted by its requests), their median and range, and how many runs are ahead (> 1.02),
  level (0.98-1.02) and behind; ``interleaved_stable_phases``: the same over the ``interleaved``
  plan's runs, and ``interleaved_phase_losses`` where their routed tokens went, per phase;
- ``overtakes``: per policy of the engine-priority runs, how many times a turn sent later to the same
  replica got its first token earlier (from the turn logs: ``sent`` and ``ttft`` per routed turn).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # bench/: results_file
from results_file import emit  # noqa: E402
from turn_log import where_tokens_went  # noqa: E402

STABLE = ("all_up", "back_cold")


def stable_rate(policy: dict[str, Any]) -> float:
    phases = policy["phases"]
    requests = sum(phases[p]["requests"] for p in STABLE)
    return sum(phases[p]["requests"] * phases[p]["routed_hit_rate"] for p in STABLE) / requests


def runs(*patterns: str) -> list[Path]:
    return sorted({path for pattern in patterns for path in HERE.glob(pattern)})


INTERLEAVED = ("results_interleaved.json", "results_interleaved_seed*.json")
"""The interleaved plan's runs as the plan is (not the experiment beside them, ``_nice10``)."""


def stable_phases(*patterns: str) -> dict[str, Any]:
    ratios: dict[str, float] = {}
    for path in runs(*(patterns or ("results_pressure*.json",))):
        policies = json.loads(path.read_text())["policies"]
        if "precise_prefix" in policies and "prefix_affinity" in policies:
            ratio = stable_rate(policies["precise_prefix"]) / stable_rate(policies["prefix_affinity"])
            ratios[path.name] = round(ratio, 3)
    values = list(ratios.values())
    return {
        "runs": ratios,
        "median": round(statistics.median(values), 3),
        "min": min(values),
        "max": max(values),
        "at_least_1_3": sum(v >= 1.3 for v in values),
        "ahead": sum(v > 1.02 for v in values),
        "level": sum(0.98 <= v <= 1.02 for v in values),
        "behind": sum(v < 0.98 for v in values),
    }


def phase_losses(*patterns: str) -> dict[str, Any]:
    """Per run, policy and phase, in shares of the routed prompt tokens: the send-time oracle, what was
    hit, what the choice left on a better replica and what the chosen one held at the send but did not
    hit (``turn_log.where_tokens_went`` on each phase's turns, as the turn log annotated them)."""
    out: dict[str, Any] = {}
    for results in runs(*patterns):
        with gzip.open(results.with_suffix(".turns.jsonl.gz"), "rt") as f:
            turns = [json.loads(line) for line in f]
        phases: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for t in turns:
            phases.setdefault(t["id"].split("/")[0], {}).setdefault(t["phase"], []).append(t)
        access = {t["id"]: t for t in turns}  # each record carries its upstream and reason
        out[results.stem] = {
            policy: {phase: _shares(where_tokens_went(group, access)) for phase, group in groups.items()}
            for policy, groups in phases.items()
        }
    return out


def _shares(went: dict[str, Any]) -> dict[str, float]:
    choice, after, oracle = (
        sum(went["choice_tokens_lost_by_reason"].values()),
        went["after_send_tokens_lost"],
        went["oracle_tokens"],
    )
    tokens = {"oracle": oracle, "hit": oracle - choice - after, "choice": choice, "after_send": after}
    return {k: round(v / went["prompt_tokens"], 3) if went["prompt_tokens"] else 0.0 for k, v in tokens.items()}


def overtakes(path: Path) -> dict[str, int]:
    with gzip.open(path, "rt") as f:
        turns = [json.loads(line) for line in f]
    turns = [t for t in turns if "sent" in t and t.get("ttft") is not None and t.get("upstream")]

    def overtook(u: dict[str, Any], t: dict[str, Any]) -> bool:
        """``u`` sent after ``t`` to the same replica, its first token before ``t``'s."""
        same = u["upstream"] == t["upstream"]
        return same and u["sent"] > t["sent"] and u["sent"] + u["ttft"] < t["sent"] + t["ttft"]

    counts: dict[str, int] = {}
    for policy in sorted({t["id"].split("/")[0] for t in turns}):
        mine = [t for t in turns if t["id"].startswith(policy + "/")]
        counts[policy] = sum(overtook(u, t) for t in mine for u in mine)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    runs = sorted(HERE.glob("results_pressure_s17_engine_priority_*.turns.jsonl.gz"))
    result = {
        "command": "python bench/routing_real/pressure_tally.py" + (f" --out {args.out}" if args.out else ""),
        "stable_phases": stable_phases(),
        "interleaved_stable_phases": stable_phases(*INTERLEAVED),
        "interleaved_phase_losses": phase_losses(*INTERLEAVED),
        "overtakes": {p.name.split(".")[0]: overtakes(p) for p in runs},
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
