"""SLO verdicts: thresholds from ``slo.yaml`` against what the run measured.

The thresholds file maps a metric to a bound, ``max`` (must not exceed) or ``min`` (must reach):

    ttft_p95_s: {max: 2.0}
    output_tokens_per_s: {min: 50}

A metric the run could not measure (no successful stream, so no TTFT) fails: a test that
produced no evidence must not pass.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

# The metrics a run measures (see ``hooks.measure``), with how they are shown.
METRICS: dict[str, str] = {
    "ttft_p50_s": "TTFT p50 (s)",
    "ttft_p95_s": "TTFT p95 (s)",
    "ttft_p99_s": "TTFT p99 (s)",
    "itl_p50_s": "ITL p50 (s)",
    "itl_p95_s": "ITL p95 (s)",
    "itl_p99_s": "ITL p99 (s)",
    "e2e_p95_s": "end-to-end p95 (s)",
    "error_rate": "error rate",
    "output_tokens_per_s": "output tokens/s (aggregate)",
    "requests_per_s": "requests/s",
}

EXIT_PASS = 0
# Distinct from locust's own codes (1: request failures, 2: unhandled exception) so a crash can
# never read as a verdict, and a broken SLO never as a crash.
EXIT_SLO_BROKEN = 3


@dataclass(frozen=True)
class Threshold:
    metric: str
    bound: str  # "max" or "min"
    limit: float


@dataclass(frozen=True)
class Verdict:
    metric: str
    bound: str
    limit: float
    measured: float | None

    @property
    def passed(self) -> bool:
        if self.measured is None:
            return False
        return self.measured <= self.limit if self.bound == "max" else self.measured >= self.limit


def load_thresholds(path: Path) -> list[Threshold]:
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected a mapping of metric -> {{max: x}} or {{min: x}}")
    thresholds = []
    for metric, spec in raw.items():
        if metric not in METRICS:
            raise ValueError(f"{path}: unknown metric {metric!r}; known: {', '.join(METRICS)}")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in ("max", "min"):
            raise ValueError(f"{path}: {metric}: expected {{max: x}} or {{min: x}}, got {spec!r}")
        bound, limit = next(iter(spec.items()))
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            raise ValueError(f"{path}: {metric}.{bound}: expected a number, got {limit!r}")
        thresholds.append(Threshold(metric, bound, float(limit)))
    return thresholds


def judge(thresholds: list[Threshold], measured: dict[str, float | None]) -> list[Verdict]:
    return [Verdict(t.metric, t.bound, t.limit, measured.get(t.metric)) for t in thresholds]


def exit_code(verdicts: list[Verdict]) -> int:
    return EXIT_PASS if all(v.passed for v in verdicts) else EXIT_SLO_BROKEN


def table(verdicts: list[Verdict]) -> str:
    rows = [("SLO", "threshold", "measured", "verdict")]
    for v in verdicts:
        sign = "<=" if v.bound == "max" else ">="
        rows.append((METRICS[v.metric], f"{sign} {_fmt(v.limit)}", _fmt(v.measured), "PASS" if v.passed else "FAIL"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    broken = sum(not v.passed for v in verdicts)
    lines.append("")
    lines.append(f"SLO verdict: {'PASS' if not broken else f'FAIL ({broken} of {len(verdicts)} broken)'}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{value:.4g}"


def to_json(verdicts: list[Verdict], measured: dict[str, float | None]) -> str:
    doc: dict[str, Any] = {
        "passed": all(v.passed for v in verdicts),
        "verdicts": [{**asdict(v), "passed": v.passed} for v in verdicts],
        "measured": measured,
    }
    return json.dumps(doc, indent=2)
