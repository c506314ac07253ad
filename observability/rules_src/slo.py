"""Service level objectives and their multi-window, multi-burn-rate alerts.

Windows and burn-rate factors are the SRE workbook's ("Alerting on SLOs", 30-day budget):
page when 2 % of the budget burns in 1 h or 5 % in 6 h, ticket when 10 % burns in 1 d or in 3 d.
Each long window is paired with a short one (1/12 of it) so the alert resets soon after recovery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..conventions import le

LEVEL = "namespace_model"
BY = "namespace, model"


@dataclass(frozen=True)
class SLO:
    name: str  # label value slo="..."
    title: str
    objective: float  # share of good events, e.g. 0.995
    bad: Callable[[str], str]  # window -> PromQL rate of bad events
    total: Callable[[str], str]  # window -> PromQL rate of all events

    @property
    def budget(self) -> float:
        return round(1 - self.objective, 6)

    def ratio(self, window: str) -> str:
        return f"{self.bad(window)}\n/\n{self.total(window)}"


_REQ = "inferstack_requests_total"
_TTFT = "inferstack_time_to_first_token_seconds"

SLOS = (
    SLO(
        name="availability",
        title="Availability",
        objective=0.995,
        # "or ... * 0": without a single 5xx the error series doesn't exist; the ratio must read 0.
        bad=lambda w: (
            f'(sum by ({BY}) (rate({_REQ}{{status=~"5.."}}[{w}]))\n'
            f" or\n 0 * sum by ({BY}) (rate({_REQ}[{w}])))"
        ),
        total=lambda w: f"sum by ({BY}) (rate({_REQ}[{w}]))",
    ),
    SLO(
        name="ttft",
        title="Time to first token under 2 s",
        objective=0.99,
        bad=lambda w: (
            f"(sum by ({BY}) (rate({_TTFT}_count[{w}]))\n"
            f" -\n sum by ({BY}) (rate({_TTFT}_bucket{{{le('2')}}}[{w}])))"
        ),
        total=lambda w: f"sum by ({BY}) (rate({_TTFT}_count[{w}]))",
    ),
)

WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


@dataclass(frozen=True)
class BurnAlert:
    suffix: str  # FastBurn / SlowBurn
    severity: str
    pairs: tuple[tuple[str, str, float], ...]  # (long window, short window, burn-rate factor)


BURN_ALERTS = (
    BurnAlert("FastBurn", "critical", (("1h", "5m", 14.4), ("6h", "30m", 6.0))),
    BurnAlert("SlowBurn", "warning", (("1d", "2h", 3.0), ("3d", "6h", 1.0))),
)


def ratio_name(window: str) -> str:
    return f"{LEVEL}:inferstack_slo_errors:ratio_rate{window}"


BUDGET_REMAINING = f"{LEVEL}:inferstack_slo_error_budget_remaining:ratio"
OBJECTIVE = "inferstack:slo_objective:ratio"


def recording_rules() -> list[dict[str, object]]:
    rules: list[dict[str, object]] = []
    for slo in SLOS:
        lbl = {"slo": slo.name}
        rules.append({"record": OBJECTIVE, "expr": f"vector({slo.objective})", "labels": lbl})
        # Event rates over 5m, kept so the 30-day ratio is request-weighted and cheap:
        # sum_over_time of 5m rates, instead of a rate over 30 days of raw samples.
        rules.append({"record": f"{LEVEL}:inferstack_slo_bad_events:rate5m",
                      "expr": slo.bad("5m"), "labels": lbl})
        rules.append({"record": f"{LEVEL}:inferstack_slo_events:rate5m",
                      "expr": slo.total("5m"), "labels": lbl})
        for w in WINDOWS:
            rules.append({"record": ratio_name(w), "expr": slo.ratio(w), "labels": lbl})
        sel = f'{{slo="{slo.name}"}}'
        rules.append({
            "record": ratio_name("30d"),
            "expr": (f"sum_over_time({LEVEL}:inferstack_slo_bad_events:rate5m{sel}[30d])\n/\n"
                     f"sum_over_time({LEVEL}:inferstack_slo_events:rate5m{sel}[30d])"),
            "labels": lbl,
        })
        rules.append({
            "record": BUDGET_REMAINING,
            "expr": f"1 - {ratio_name('30d')}{sel} / {slo.budget}",
            "labels": lbl,
        })
    return rules


RUNBOOK = {
    "availability": (
        "The gateway answers too many requests with 5xx for this model.\n"
        "1. Dashboard 'inferstack / Service overview': which status codes, since when.\n"
        "2. inferstack_upstream_errors_total by kind: connect/timeout point at engines (see "
        "'Engines' dashboard, pods restarting, OOM), http_5xx at the engine itself (its logs).\n"
        "3. 503 with no ready replica: see the InferstackModelUnavailable alert and the "
        "'Capacity' dashboard (GPU nodes, pending pods).\n"
        "4. Mitigate: roll back the last engine/gateway change, or add replicas."
    ),
    "ttft": (
        "Too many streams wait longer than 2 s for their first token.\n"
        "1. 'Engines' dashboard: queue time and waiting requests per replica. A queue means "
        "too little capacity: check the autoscaler (Capacity dashboard) and pending GPU pods.\n"
        "2. KV-cache usage near 100 % or preemptions rising: prompts got longer; lower "
        "max-num-seqs or add replicas.\n"
        "3. Prefill time high with a low prefix-cache hit ratio: check the routing policy "
        "(prefix_affinity) still routes shared prefixes together."
    ),
}


def alert_rules() -> list[dict[str, object]]:
    rules: list[dict[str, object]] = []
    for slo in SLOS:
        base = "Inferstack" + ("Availability" if slo.name == "availability" else "TTFT")
        for ba in BURN_ALERTS:
            sel = f'{{slo="{slo.name}"}}'
            terms = []
            for long_w, short_w, factor in ba.pairs:
                threshold = round(factor * slo.budget, 6)
                terms.append(
                    f"({ratio_name(long_w)}{sel} > {threshold}\n"
                    f" and\n {ratio_name(short_w)}{sel} > {threshold})"
                )
            pairs = ", ".join(f"{f:g}x over {lw} and {sw}" for lw, sw, f in ba.pairs)
            rules.append({
                "alert": base + ba.suffix,
                "expr": "\n or\n".join(terms),
                "labels": {"severity": ba.severity, "slo": slo.name},
                "annotations": {
                    "summary": (f"{slo.title} SLO ({slo.objective:.1%}) of model {{{{ $labels.model }}}} "
                                f"in {{{{ $labels.namespace }}}} burns its error budget too fast"),
                    "description": (f"Error budget burn rate above {pairs}: at this pace the 30-day "
                                    f"budget of {slo.budget:.1%} is gone early. Current ratio of bad "
                                    f"events: {{{{ $value | humanizePercentage }}}}."),
                    "runbook": RUNBOOK[slo.name],
                },
            })
    return rules
