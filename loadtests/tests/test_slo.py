from pathlib import Path

import pytest

from llmload.profile import LOADTESTS
from llmload.slo import EXIT_PASS, EXIT_SLO_BROKEN, Threshold, exit_code, judge, load_thresholds, table

THRESHOLDS = [
    Threshold("ttft_p95_s", "max", 2.0),
    Threshold("error_rate", "max", 0.01),
    Threshold("output_tokens_per_s", "min", 100),
]


def test_all_held_passes() -> None:
    verdicts = judge(THRESHOLDS, {"ttft_p95_s": 1.2, "error_rate": 0.0, "output_tokens_per_s": 250})
    assert exit_code(verdicts) == EXIT_PASS
    assert table(verdicts).endswith("SLO verdict: PASS")


def test_bounds_are_inclusive() -> None:
    verdicts = judge(THRESHOLDS, {"ttft_p95_s": 2.0, "error_rate": 0.01, "output_tokens_per_s": 100})
    assert all(v.passed for v in verdicts)


def test_one_broken_threshold_fails_the_run_and_the_table_says_which() -> None:
    verdicts = judge(THRESHOLDS, {"ttft_p95_s": 3.5, "error_rate": 0.0, "output_tokens_per_s": 250})
    assert exit_code(verdicts) == EXIT_SLO_BROKEN
    text = table(verdicts)
    row = next(line for line in text.splitlines() if line.startswith("TTFT p95"))
    assert row.split()[-3:] == ["2", "3.5", "FAIL"]
    assert "SLO verdict: FAIL (1 of 3 broken)" in text


def test_a_metric_without_data_fails() -> None:
    verdicts = judge(THRESHOLDS, {"ttft_p95_s": None, "error_rate": 1.0, "output_tokens_per_s": 0.0})
    assert not any(v.passed for v in verdicts)
    assert "no data" in table(verdicts)


def test_checked_in_files_load() -> None:
    assert {t.metric for t in load_thresholds(LOADTESTS / "slo.yaml")} == {
        "ttft_p95_s",
        "itl_p95_s",
        "error_rate",
        "output_tokens_per_s",
    }
    assert load_thresholds(LOADTESTS / "slo-local.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttft_p95: {max: 1}", "unknown metric 'ttft_p95'"),
        ("ttft_p95_s: {below: 1}", "expected {max: x} or {min: x}"),
        ("ttft_p95_s: {max: 1, min: 0}", "expected {max: x} or {min: x}"),
        ("ttft_p95_s: {max: fast}", "expected a number"),
        ("", "expected a mapping"),
    ],
)
def test_bad_threshold_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_thresholds(path)
