"""The report on synthetic data: no server, no locust."""

import base64
import json
import random
import re
from pathlib import Path

import pytest

from llmload.report import build
from llmload.samples import GapHistogram, RequestSample, SampleWriter, read_gap_histogram, read_requests
from llmload.slo import Threshold, judge, to_json


def synthetic_run(directory: Path, requests: int = 200) -> None:
    rng = random.Random(3)
    writer = SampleWriter(directory, "local")
    for i in range(requests):
        users = 1 + i // 40  # a step ramp: latency grows with users
        ttft = 0.05 * users + rng.random() * 0.02
        gaps = [0.01 * users + rng.random() * 0.005 for _ in range(20)]
        outcome = "ok" if i % 25 else ("http_503" if i % 50 else "stream_error:internal_error")
        writer.add(
            RequestSample(
                started_at=1_700_000_000 + i * 0.5,
                scenario="chat",
                model="m",
                key=i % 2,
                users=users,
                outcome=outcome,
                ttft_s=ttft,
                e2e_s=ttft + sum(gaps),
                prompt_tokens=100,
                output_tokens=21,
                itl_mean_s=sum(gaps) / len(gaps),
                itl_max_s=max(gaps),
            ),
            gaps,
        )
    writer.close()
    verdicts = judge([Threshold("ttft_p95_s", "max", 0.1)], {"ttft_p95_s": 0.26})
    (directory / "verdict.json").write_text(to_json(verdicts, {"ttft_p95_s": 0.26}))
    (directory / "run.json").write_text(json.dumps({"host": "http://gw", "profile": "step", "shape": "step"}))


def test_samples_round_trip_and_gaps_land_in_their_bucket(tmp_path: Path) -> None:
    synthetic_run(tmp_path)
    rows = read_requests(tmp_path)
    assert len(rows) == 200 and rows[0]["outcome"] == "stream_error:internal_error"
    histogram = read_gap_histogram(tmp_path)
    assert sum(count for _, count in histogram) == 200 * 20
    # Every gap is in (lower, upper] of its bucket: buckets are 20 per decade (~12% wide).
    hist = GapHistogram()
    hist.add(0.0123)
    index = hist.counts.index(1)
    assert GapHistogram.upper_edge(index - 1) < 0.0123 <= GapHistogram.upper_edge(index)


def test_report_has_the_verdict_errors_plots_and_raw_files(tmp_path: Path) -> None:
    synthetic_run(tmp_path)
    (tmp_path / "locust_stats.csv").write_text("Type,Name\n")
    page = build(tmp_path).read_text()
    assert "SLO verdict: <span class='fail'>FAIL</span>" in page
    assert "http_503" in page and "stream_error:internal_error" in page  # errors by type
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) == 4  # TTFT, ITL, over time, users against latency
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    for name in ("requests-local.csv", "itl-histogram-local.csv", "locust_stats.csv", "verdict.json"):
        assert f"href='{name}'" in page


def test_report_of_a_run_without_samples_still_renders(tmp_path: Path) -> None:
    page = build(tmp_path).read_text()
    assert "No verdict" in page and page.count("data:image/png") == 4


@pytest.mark.filterwarnings("error")
def test_a_run_where_every_request_failed_renders_without_warnings(tmp_path: Path) -> None:
    writer = SampleWriter(tmp_path, "local")
    for i in range(5):
        writer.add(
            RequestSample(
                started_at=1_700_000_000 + i,
                scenario="chat",
                model="m",
                key=-1,
                users=2,
                outcome="http_401",
                ttft_s=None,
                e2e_s=0.003,
                prompt_tokens=None,
                output_tokens=0,
                itl_mean_s=None,
                itl_max_s=None,
            ),
            [],
        )
    writer.close()
    page = build(tmp_path).read_text()
    assert "http_401" in page and "100.00%" in page
