"""Turn a run into numbers (percentiles, rates, balance), a text table and a plot."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from des import RunResult

from inferstack_fake_engine.sim import SimParams


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every number reported was observed)."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def summarise(r: RunResult, params: SimParams) -> dict[str, Any]:
    per_replica = [statistics.fmean(col) for col in zip(*r.in_flight_samples, strict=True)]
    running = [statistics.fmean(col) for col in zip(*r.running_samples, strict=True)]
    mean_load = statistics.fmean(per_replica)
    return {
        "policy": r.policy,
        "requests": len(r.ttft),
        "ttft_p50": round(percentile(r.ttft, 50), 4),
        "ttft_p90": round(percentile(r.ttft, 90), 4),
        "ttft_p99": round(percentile(r.ttft, 99), 4),
        "output_tokens_per_s": round(r.output_tokens / r.duration, 1),
        "completed_per_s": round(r.completed / r.duration, 3),
        "prefix_cache_hit_rate": round(r.prefix_hits / r.prefix_queries, 4) if r.prefix_queries else 0.0,
        "replica_load_mean": round(mean_load, 2),
        "replica_load_max_over_mean": round(max(per_replica) / mean_load, 3) if mean_load else 0.0,
        "requests_max_over_mean": round(max(r.routed) / statistics.fmean(r.routed), 3),
        "batch_occupancy": round(statistics.fmean(running) / params.max_num_seqs, 3),
        "reasons": dict(sorted(r.reasons.items())),
    }


COLUMNS = (
    ("policy", "policy", "{}"),
    ("TTFT p50 s", "ttft_p50", "{:.3f}"),
    ("p90 s", "ttft_p90", "{:.3f}"),
    ("p99 s", "ttft_p99", "{:.3f}"),
    ("out tok/s", "output_tokens_per_s", "{:.0f}"),
    ("prefix hit", "prefix_cache_hit_rate", "{:.1%}"),
    ("load max/mean", "replica_load_max_over_mean", "{:.2f}"),
    ("requests", "requests", "{}"),
)


def table(results: list[dict[str, Any]]) -> str:
    rows = [[title for title, _, _ in COLUMNS]]
    rows += [[fmt.format(r[key]) for _, key, fmt in COLUMNS] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], setup: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["policy"] for r in results]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 4))
    x = range(len(names))
    for offset, (q, color) in enumerate((("p50", "#9ecae1"), ("p90", "#4292c6"), ("p99", "#08519c"))):
        ax1.bar([i + (offset - 1) * 0.27 for i in x], [r[f"ttft_{q}"] for r in results], 0.27, label=q, color=color)
    ax1.set_yscale("log")
    ax1.set_ylabel("time to first token (s, log)")
    ax1.set_title("TTFT")
    ax1.legend(loc="upper center")
    ax2.bar(list(x), [100 * r["prefix_cache_hit_rate"] for r in results], color="#41ab5d")
    ax2.set_ylabel("% of prompt tokens")
    ax2.set_title("prefix-cache hit rate")
    ax3.bar(list(x), [r["replica_load_max_over_mean"] for r in results], color="#fd8d3c")
    ax3.axhline(1.25, ls="--", color="grey", lw=1)
    ax3.set_ylabel("max / mean in-flight per replica")
    ax3.set_title("load balance")
    for ax in (ax1, ax2, ax3):
        ax.set_xticks(list(x), names, rotation=10)
    fig.suptitle(
        f"{setup['replicas']} simulated replicas, {setup['workload']['tenants']} tenants, "
        f"offered load {setup['offered_load']:.0%} of no-cache capacity, "
        f"{setup['measured_seconds']:.0f} s measured (virtual time)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
