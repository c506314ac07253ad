"""The HTML report of a run, built from the files the run left in its report folder.

Inputs (all in the folder): ``requests-*.csv`` and ``itl-histogram-*.csv`` (``samples.py``),
``verdict.json`` (the SLO verdict), ``run.json`` (what was run, from ``run.py``) and locust's own
CSVs and HTML when present (linked, not parsed). Output: ``report.html``, one self-contained file
(plots inlined as PNG) that can be attached to a release ticket.

Percentiles here come from the raw samples, so they can differ slightly from the verdict's, which
uses locust's statistics (rounded to two significant digits above 100 ms).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on CI or servers
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .samples import GapHistogram, read_gap_histogram, read_requests
from .slo import METRICS


def build(directory: Path) -> Path:
    rows = read_requests(directory)
    gaps = read_gap_histogram(directory)
    run = _json(directory / "run.json")
    verdict = _json(directory / "verdict.json")
    ok = [r for r in rows if r["outcome"] == "ok"]
    ttft = np.array([float(r["ttft_s"]) for r in rows if r["ttft_s"]])
    sections = [
        _run_section(run, rows, ttft, gaps),
        _verdict_section(verdict),
        _errors_section(rows),
        _figure("Time to first token", _ttft_plot(ttft)),
        _figure("Inter-token latency (every gap)", _itl_plot(gaps)),
        _figure("Throughput and latency over time", _over_time_plot(rows)),
        _figure("Users against latency", _users_plot(ok)),
        _files_section(directory),
    ]
    title = f"Load test report: {run.get('profile', directory.name)}"
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>"
    )
    out = directory / "report.html"
    out.write_text(page)
    return out


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}"
    ".pass{color:#17803d;font-weight:bold}.fail{color:#b42318;font-weight:bold}img{max-width:100%}"
)


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pct(values: np.ndarray, q: float) -> str:
    return f"{np.percentile(values, q):.3f}" if values.size else "no data"


def _gap_percentile(gaps: list[tuple[float, int]], q: float) -> float | None:
    total = sum(count for _, count in gaps)
    if not total:
        return None
    running = 0
    for edge, count in gaps:
        running += count
        if running >= total * q / 100:
            return edge
    return gaps[-1][0]


def _run_section(
    run: dict[str, Any], rows: list[dict[str, str]], ttft: np.ndarray, gaps: list[tuple[float, int]]
) -> str:
    starts = [float(r["started_at"]) for r in rows]
    span = (max(float(r["started_at"]) + float(r["e2e_s"]) for r in rows) - min(starts)) if rows else 0.0
    tokens = sum(int(r["output_tokens"]) for r in rows)
    facts = [
        ["host", html.escape(str(run.get("host", "")))],
        ["profile", html.escape(str(run.get("profile", "")))],
        ["shape", html.escape(str(run.get("shape", "")))],
        ["requests", str(len(rows))],
        ["output tokens", f"{tokens} ({tokens / span:.1f}/s over {span:.0f} s)" if span else str(tokens)],
        ["TTFT p50 / p95 / p99 (s)", " / ".join(_pct(ttft, q) for q in (50, 95, 99))],
        [
            "ITL p50 / p95 / p99 (s, bucket upper edge)",
            " / ".join(
                "no data" if v is None else f"{v:.4f}" for v in (_gap_percentile(gaps, q) for q in (50, 95, 99))
            ),
        ],
    ]
    return "<h2>Run</h2>" + _table(["", ""], facts)


def _verdict_section(verdict: dict[str, Any]) -> str:
    if not verdict:
        return "<h2>SLO verdict</h2><p>No verdict (the run did not finish).</p>"
    rows = []
    for v in verdict["verdicts"]:
        sign = "&le;" if v["bound"] == "max" else "&ge;"
        measured = "no data" if v["measured"] is None else f"{v['measured']:.4g}"
        mark = "<span class='pass'>PASS</span>" if v["passed"] else "<span class='fail'>FAIL</span>"
        rows.append([METRICS.get(v["metric"], v["metric"]), f"{sign} {v['limit']:g}", measured, mark])
    overall = "<span class='pass'>PASS</span>" if verdict["passed"] else "<span class='fail'>FAIL</span>"
    return f"<h2>SLO verdict: {overall}</h2>" + _table(["SLO", "threshold", "measured", "verdict"], rows)


def _errors_section(rows: list[dict[str, str]]) -> str:
    outcomes = Counter(r["outcome"] for r in rows)
    errors = [[html.escape(kind), str(n), f"{n / len(rows):.2%}"] for kind, n in outcomes.most_common() if kind != "ok"]
    if not errors:
        return "<h2>Errors</h2><p>None.</p>"
    return "<h2>Errors by type</h2>" + _table(["type", "requests", "share"], errors)


def _files_section(directory: Path) -> str:
    files = sorted(
        p.name
        for p in directory.iterdir()
        if p.suffix in (".csv", ".html", ".json", ".txt") and p.name != "report.html"
    )
    links = "".join(f"<li><a href='{html.escape(name)}'>{html.escape(name)}</a></li>" for name in files)
    return f"<h2>Raw data</h2><ul>{links}</ul>"


def _figure(title: str, fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"


def _empty(ax: Any) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)


def _ttft_plot(ttft: np.ndarray) -> Figure:
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 3.5))
    if ttft.size:
        hist.hist(ttft, bins=min(50, max(10, ttft.size // 5)), color="#4878d0")
        ordered = np.sort(ttft)
        cdf.plot(ordered, np.arange(1, ordered.size + 1) / ordered.size, color="#4878d0")
        for q in (50, 95):
            cdf.axvline(np.percentile(ttft, q), ls="--", color="grey", lw=0.8)
    else:
        _empty(hist)
        _empty(cdf)
    hist.set(xlabel="TTFT (s)", ylabel="requests", title="distribution")
    cdf.set(xlabel="TTFT (s)", ylabel="share of requests", title="cumulative (dashed: p50, p95)")
    return fig


def _itl_plot(gaps: list[tuple[float, int]]) -> Figure:
    fig, ax = plt.subplots(figsize=(11, 3.5))
    nonzero = [(edge, count) for edge, count in gaps if count]
    if nonzero:
        edges = np.array([edge for edge, _ in gaps])
        counts = np.array([count for _, count in gaps])
        lo, hi = nonzero[0][0], nonzero[-1][0]
        keep = (edges >= lo / 1.5) & (edges <= hi * 1.5)
        lower = edges[keep] / 10 ** (1 / GapHistogram.PER_DECADE)  # a bucket spans (lower, edge]
        ax.bar(lower, counts[keep], width=edges[keep] - lower, align="edge", color="#ee854a")
        ax.set_xscale("log")
    else:
        _empty(ax)
    ax.set(xlabel="gap between tokens (s, log scale)", ylabel="gaps")
    return fig


def _over_time_plot(rows: list[dict[str, str]]) -> Figure:
    fig, (through, latency) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    if rows:
        start = min(float(r["started_at"]) for r in rows)
        ends = np.array([float(r["started_at"]) + float(r["e2e_s"]) - start for r in rows])
        width = max(2.0, float(ends.max()) / 60)  # ~60 bins whatever the length of the run
        bins = np.arange(0, ends.max() + width, width)
        tokens = np.array([int(r["output_tokens"]) for r in rows])
        # Tokens and requests counted when their request ends: a bin is a short window of the run.
        tok, _ = np.histogram(ends, bins=bins, weights=tokens)
        req, _ = np.histogram(ends, bins=bins)
        through.step(bins[:-1], tok / width, where="post", label="output tokens/s")
        through.step(bins[:-1], req / width, where="post", label="requests/s")
        users_ax = through.twinx()
        starts = np.array([float(r["started_at"]) - start for r in rows])
        users = np.array([int(r["users"]) for r in rows])
        order = np.argsort(starts)
        users_ax.plot(starts[order], users[order], color="grey", lw=0.8, label="users")
        users_ax.set_ylabel("users")
        through.legend(loc="upper left")
        ttft = [(s, float(r["ttft_s"])) for s, r in zip(starts, rows, strict=True) if r["ttft_s"]]
        if ttft:
            t = np.array(ttft)
            index = np.digitize(t[:, 0], bins) - 1
            for q, style in ((50, "-"), (95, "--")):
                values = [
                    np.percentile(t[index == i, 1], q) if np.any(index == i) else np.nan for i in range(len(bins) - 1)
                ]
                latency.plot(bins[:-1] + width / 2, values, style, marker=".", label=f"TTFT p{q}")
        itl = [(s, float(r["itl_mean_s"])) for s, r in zip(starts, rows, strict=True) if r["itl_mean_s"]]
        if itl:
            i_arr = np.array(itl)
            latency.plot(i_arr[:, 0], i_arr[:, 1], ".", alpha=0.4, label="mean ITL of a request")
        if ttft or itl:
            latency.legend(loc="upper left")
        else:
            _empty(latency)
    else:
        _empty(through)
    through.set(ylabel="per second", title="throughput (by request end) and users")
    latency.set(xlabel="seconds since start", ylabel="seconds", title="latency (by request start)")
    return fig


def _users_plot(ok: list[dict[str, str]]) -> Figure:
    fig, (first, gap) = plt.subplots(1, 2, figsize=(11, 3.5))
    points = [(int(r["users"]), float(r["ttft_s"]), float(r["itl_mean_s"] or "nan")) for r in ok if r["ttft_s"]]
    if points:
        data = np.array(points)
        first.scatter(data[:, 0], data[:, 1], s=8, alpha=0.4)
        gap.scatter(data[:, 0], data[:, 2], s=8, alpha=0.4, color="#ee854a")
        levels = np.unique(data[:, 0])
        for ax, column in ((first, 1), (gap, 2)):
            p95 = [np.nanpercentile(data[data[:, 0] == u, column], 95) for u in levels]
            ax.plot(levels, p95, "k--", marker="D", ms=4, lw=1, label="p95")
            ax.legend(loc="upper left")
    else:
        _empty(first)
        _empty(gap)
    first.set(xlabel="users when the request started", ylabel="TTFT (s)")
    gap.set(xlabel="users when the request started", ylabel="mean ITL of the request (s)")
    return fig
