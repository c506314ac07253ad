"""The smoke profile against the real local stack (vLLM on CPU behind the gateway).

The gateway is the module's own (``fresh_live_stack``): the load test spreads over every model
``/v1/models`` lists, and the session's long-lived gateway also lists adapters that other tests
loaded and unloaded (session 12, a fresh-clone run: requests for such a version held 60 s, until
locust gave up on them).

One 30-second run with a generous SLO (must pass, exit 0) and a short one with an impossible SLO
(must fail with exit 3 and say which thresholds broke), through ``run.py`` exactly as
``make loadtest`` runs it. The first run also checks that the TTFT locust measures agrees with
the gateway's own TTFT histogram over the same window.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmload.profile import LOADTESTS

pytestmark = pytest.mark.vllm

GENEROUS = "ttft_p95_s: {max: 60}\nitl_p95_s: {max: 10}\nerror_rate: {max: 0.0}\noutput_tokens_per_s: {min: 0.1}\n"
IMPOSSIBLE = "ttft_p95_s: {max: 0.000001}\nerror_rate: {max: 0.0}\noutput_tokens_per_s: {min: 1000000000}\n"


@dataclass
class Run:
    code: int
    output: str
    report_dir: Path


def run_loadtest(stack: Any, report_dir: Path, slo_text: str, *args: str) -> Run:
    slo = report_dir.parent / f"{report_dir.name}-slo.yaml"
    slo.write_text(slo_text)
    command = [
        sys.executable,
        str(LOADTESTS / "run.py"),
        "--host",
        stack.gateway_url,
        "--profile",
        "smoke",
        "--slo",
        str(slo),
        "--report-dir",
        str(report_dir),
        *args,
        "--",
        "--only-summary",
    ]
    env = {"INFERSTACK_API_KEY": stack.api_key} if stack.api_key else {}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**_clean_env(), **env})
    return Run(done.returncode, done.stdout + done.stderr, report_dir)


def _clean_env() -> dict[str, str]:
    # make's variables must not leak in from the caller's environment.
    return {
        k: v for k, v in os.environ.items() if k not in ("HOST", "PROFILE", "SLO", "INFERSTACK_API_KEY", "REPORT_DIR")
    }


def gateway_ttft(gateway_url: str) -> tuple[float, float]:
    """(sum, count) of the gateway's TTFT histogram for chat streams of every model: the load test
    spreads over every name ``/v1/models`` lists (the base model and its LoRA adapters)."""
    with urllib.request.urlopen(f"{gateway_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "inferstack_time_to_first_token_seconds":
            continue
        for sample in family.samples:
            if sample.labels.get("endpoint") != "chat":
                continue
            if sample.name.endswith("_sum"):
                total += sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
    return total, count


def locust_rows(report_dir: Path, request_type: str) -> list[dict[str, str]]:
    # final_stats.csv, not locust_stats.csv: locust's is a once-a-second snapshot (see llmload/hooks.py).
    with (report_dir / "final_stats.csv").open(newline="") as f:
        return [row for row in csv.DictReader(f) if row["Type"] == request_type]


@pytest.fixture(scope="module")
def smoke(fresh_live_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, tuple[float, float]]:
    before = gateway_ttft(fresh_live_stack.gateway_admin_url)
    run = run_loadtest(fresh_live_stack, tmp_path_factory.mktemp("smoke") / "report", GENEROUS)
    after = gateway_ttft(fresh_live_stack.gateway_admin_url)
    return run, (after[0] - before[0], after[1] - before[1])


def test_generous_slo_passes_and_the_report_is_written(smoke: tuple[Run, tuple[float, float]]) -> None:
    run, _ = smoke
    assert run.code == 0, run.output[-3000:]
    assert "SLO verdict: PASS" in run.output
    table = run.output[run.output.index("SLO  ") :]
    assert table.count("PASS") == 4 + 1  # four thresholds and the verdict line
    page = (run.report_dir / "report.html").read_text()
    assert page.count("data:image/png") == 4
    for name in (
        "locust_stats.csv",
        "locust_stats_history.csv",
        "locust_failures.csv",
        "requests-local.csv",
        "itl-histogram-local.csv",
        "verdict.json",
        "final_stats.csv",
        "locust.html",
    ):
        assert (run.report_dir / name).exists(), name
    scenarios = {row["Name"] for row in locust_rows(run.report_dir, "E2E")}
    assert scenarios == {"chat", "conversation", "long_context"}
    for request_type in ("TTFT", "ITL", "TOK/S", "TOKENS"):
        assert sum(int(r["Request Count"]) for r in locust_rows(run.report_dir, request_type)) > 0, request_type


# Locust's clock starts just before the request is written and stops when the chunk holding the
# first token is read; the gateway's starts when it has the request and stops when it has written
# that token. Locust's includes both loopback hops and its own greenlet scheduling, so it is the
# larger one: the gap is a few ms on an idle machine and up to tens of ms here, where vLLM keeps both
# cores busy. 25 ms + 10% bounds that; a relay that buffered the stream (the LiteLLM bug in
# FIELD-NOTES: 270 ms -> 1.7 s) or measured a different event would be far outside it.
TTFT_TOLERANCE_S = 0.025
TTFT_TOLERANCE_RATIO = 0.10


def test_locust_ttft_agrees_with_the_gateway_histogram(smoke: tuple[Run, tuple[float, float]]) -> None:
    run, (gateway_sum, gateway_count) = smoke
    rows = locust_rows(run.report_dir, "TTFT")
    locust_count = sum(int(r["Request Count"]) for r in rows)
    locust_mean = sum(float(r["Average Response Time"]) * int(r["Request Count"]) for r in rows) / locust_count / 1000
    gateway_mean = gateway_sum / gateway_count
    # Same requests: every first token locust saw, the gateway counted, and nothing else ran.
    assert gateway_count == locust_count
    allowed = TTFT_TOLERANCE_S + TTFT_TOLERANCE_RATIO * gateway_mean
    assert -0.002 <= locust_mean - gateway_mean <= allowed, (locust_mean, gateway_mean)


def test_impossible_slo_fails_with_exit_3_and_the_table(fresh_live_stack: Any, tmp_path: Path) -> None:
    run = run_loadtest(fresh_live_stack, tmp_path / "report", IMPOSSIBLE, "--duration", "10")
    assert run.code == 3, run.output[-3000:]
    lines = run.output.splitlines()
    rows = [line for line in lines if line.startswith(("TTFT p95", "error rate", "output tokens"))]
    verdict = {row.split("  ")[0]: row.split()[-1] for row in rows}
    assert verdict == {"TTFT p95 (s)": "FAIL", "error rate": "PASS", "output tokens/s (aggregate)": "FAIL"}
    assert "SLO verdict: FAIL (2 of 3 broken)" in run.output
    assert (tmp_path / "report" / "report.html").exists()
