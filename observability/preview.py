"""Render each dashboard's panels to PNG from a live Prometheus, so a reviewer sees them without
Grafana. Not a Grafana replacement: one small chart per panel, in the dashboard's order.

    python -m observability.preview --prometheus http://127.0.0.1:9090 --out observability/preview
    make dashboards-preview

It refuses (exit 3, nothing written) when the gateway answered any request with 401 or 403 in the
window: a load test with a stale or missing key makes every panel show errors, not the stack.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

from . import promapi
from .queries import PanelQuery, load_dashboards, panel_queries, substitute

_SCALE = {"percentunit": (100.0, "%"), "percent": (1.0, "%"), "s": (1.0, "s"), "reqps": (1.0, "req/s"),
          "ops": (1.0, "/s"), "bytes": (1 / 2**30, "GiB"), "watt": (1.0, "W"), "celsius": (1.0, "°C"),
          "currencyUSD": (1.0, "USD")}


def _legend(template: str, labels: dict[str, str]) -> str:
    if not template:
        return ",".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def _panel(ax: Any, title: str, kind: str, queries: list[PanelQuery], prom: str, variables: dict[str, str],
           start: float, end: float, step: float) -> None:
    unit = queries[0].unit if queries else ""
    scale, suffix = _SCALE.get(unit, (1.0, ""))
    ax.set_title(title, fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    window = f"{int(end - start)}s"
    if kind in ("stat", "bargauge"):
        labels, values = [], []
        for q in queries:
            for s in promapi.query(prom, substitute(q.expr, variables, range_=window), at=end):
                v = float(s["value"][1])
                if not math.isnan(v):
                    labels.append(_legend(q.legend, s["metric"]))
                    values.append(v * scale)
        if kind == "stat":
            ax.axis("off")
            text = f"{values[0]:.3g} {suffix}" if values else "No data"
            ax.text(0.5, 0.45, text, ha="center", va="center", fontsize=20, transform=ax.transAxes)
        elif values:
            # Heatmap-format bars are cumulative "le" buckets: Grafana de-accumulates them, so do we.
            pairs = sorted(zip(labels, values, strict=True), key=lambda p: float(p[0].replace("+Inf", "inf")))
            counts = [v - (pairs[i - 1][1] if i else 0.0) for i, (_, v) in enumerate(pairs)]
            ax.bar([f"≤{le}" for le, _ in pairs], counts, color="#5794f2")
            ax.tick_params(axis="x", labelrotation=60, labelsize=6)
        return
    lines = 0
    for q in queries:
        for s in promapi.query_range(prom, substitute(q.expr, variables, range_=window), start, end, step):
            pts = [(float(t) - end, float(v) * scale) for t, v in s["values"] if not math.isnan(float(v))]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot([x / 60 for x in xs], ys, linewidth=1, label=_legend(q.legend, s["metric"])[:40])
                lines += 1
    ax.set_xlabel("minutes ago" if lines else "", fontsize=7)
    if suffix:
        ax.set_ylabel(suffix, fontsize=7)
    if lines:
        ax.legend(fontsize=6, loc="upper left")
    else:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", transform=ax.transAxes)


def render(dashboard: dict[str, Any], prom: str, out: Path, variables: dict[str, str],
           minutes: float = 15) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    by_title: dict[str, list[PanelQuery]] = {}
    for q in panel_queries(dashboard):
        by_title.setdefault(q.panel, []).append(q)
    cols = 4
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 4.2, rows * 2.8), squeeze=False)
    end = time.time()
    start = end - minutes * 60
    for ax, p in zip(axes.flat, panels, strict=False):
        _panel(ax, p["title"], p["type"], by_title.get(p["title"], []), prom, variables, start, end,
               max(1.0, (end - start) / 200))
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{dashboard['title']}  ({variables.get('namespace', '')} / {variables.get('model', '')})",
                 fontsize=12)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{dashboard['uid']}.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


AUTH_STATUSES = '{status=~"401|403"}'
EXIT_AUTH_ERRORS = 3


def auth_errors(prom: str, start: float, end: float) -> dict[str, float]:
    """Requests the gateway answered 401/403 between start and end, by status (none: empty)."""
    metric = f"inferstack_requests_total{AUTH_STATUSES}"
    counts: dict[str, float] = {}
    expr = f"sum by (status) (increase({metric}[{max(1, int(end - start))}s]))"
    for s in promapi.query(prom, expr, at=end):
        counts[s["metric"].get("status", "")] = float(s["value"][1])
    # A series born inside the window (a gateway started for the run): increase() does not count its
    # first samples, the difference with the value before the window does.
    before = {
        s["metric"].get("status", ""): float(s["value"][1])
        for s in promapi.query(prom, f"sum by (status) ({metric})", at=start)
    }
    for s in promapi.query(prom, f"sum by (status) ({metric})", at=end):
        status = s["metric"].get("status", "")
        counts[status] = max(counts.get(status, 0.0), float(s["value"][1]) - before.get(status, 0.0))
    return {k: round(v) for k, v in sorted(counts.items()) if v >= 0.5}


def render_all(prom: str, out: Path, variables: dict[str, str], minutes: float = 15) -> list[Path]:
    return [render(d, prom, out, variables, minutes) for d in load_dashboards().values()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "preview")
    parser.add_argument("--namespace", default=".*", help="value of $namespace (a regex, as 'All' is)")
    parser.add_argument("--model", default=".*", help="value of $model")
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--allow-auth-errors", action="store_true", help="render even when 401/403s are in the window")
    args = parser.parse_args(argv)
    end = time.time()
    errors = auth_errors(args.prometheus, end - args.minutes * 60, end)
    if errors and not args.allow_auth_errors:
        counts = ", ".join(f"{n:g} x {status}" for status, n in errors.items())
        print(
            f"preview refused: in the last {args.minutes:g} min the gateway answered {counts} "
            "(inferstack_requests_total). The traffic used a wrong or stale API key, so every panel would show "
            "auth errors. Re-run the load test with the running stack's key (make loadtest reads "
            "INFERSTACK_API_KEY, or make up's dev key), wait past the window (--minutes), then preview again.",
            file=sys.stderr,
        )
        return EXIT_AUTH_ERRORS
    variables = {"namespace": args.namespace, "model": args.model, "datasource": "prometheus"}
    for path in render_all(args.prometheus, args.out, variables, args.minutes):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
