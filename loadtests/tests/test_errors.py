"""Errors by type, against the fake engine (a vLLM test double) with injected faults.

Each case runs locust for two seconds with a profile of its own and checks that every
failure lands in the right row: locust's failure table (exception class and kind) and the
report's samples. Seconds, not minutes: no real model involved.
"""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from pathlib import Path

import pytest
from inferstack_fake_engine import EngineConfig, running_engine

from llmload.profile import LOADTESTS

PROFILE = """
shape: {name: steady, users: 2, duration: 2}
request: {timeouts: {connect: 2, idle: 1, total: 10}}
scenarios:
  chat: {prompt_words: 10, output_tokens: 6, think_time: {min: 0, max: 0.05}}
"""
SLO = "error_rate: {max: 0.0}\n"

CASES = {
    # fault (fake engine behaviour)                                   -> failure row, outcome in samples
    "http_status": ({"error_status": 503, "error_rate": 1.0}, "HttpStatusError('http_503')", "http_503"),
    "stream_error": (
        {"fail_after_tokens": 2, "fail_mode": "error_event"},
        "StreamErrorEvent('stream_error:",
        "stream_error:",
    ),
    "timeout": ({"fail_after_tokens": 2, "fail_mode": "stall"}, "RequestTimeout('timeout_idle')", "timeout_idle"),
    "connection": ({"fail_after_tokens": 2, "fail_mode": "close"}, "ConnectionFailed('connection')", "connection"),
}


@pytest.mark.parametrize("case", CASES)
async def test_each_failure_is_reported_by_type(case: str, tmp_path: Path) -> None:
    fault, failure_row, outcome = CASES[case]
    (tmp_path / "profile.yaml").write_text(PROFILE)
    (tmp_path / "slo.yaml").write_text(SLO)
    config = EngineConfig(models=("fake-model",))
    config.behaviour.update({"ttft": 0.01, "itl": 0.01, **fault})
    async with running_engine(config) as url:
        # A subprocess the event loop awaits, so this loop keeps serving the fake engine meanwhile.
        process = await asyncio.create_subprocess_exec(
            # locust itself, not run.py: the HTML report adds seconds and is tested elsewhere.
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOADTESTS / "locustfile.py"),
            "--headless",
            "--only-summary",
            "--host",
            url,
            "--load-profile",
            str(tmp_path / "profile.yaml"),
            "--slo",
            str(tmp_path / "slo.yaml"),
            "--report-dir",
            str(tmp_path / "r"),
            "--csv",
            str(tmp_path / "r" / "locust"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k not in ("INFERSTACK_API_KEY", "REPORT_DIR")},
        )
        output = (await asyncio.wait_for(process.communicate(), timeout=60))[0].decode()
    assert process.returncode == 3, output[-3000:]  # error_rate {max: 0} broken
    with (tmp_path / "r" / "locust_failures.csv").open(newline="") as f:
        failures = {row["Error"]: int(row["Occurrences"]) for row in csv.DictReader(f)}
    assert failures and all(error.startswith(failure_row) for error in failures), failures
    with (tmp_path / "r" / "requests-local.csv").open(newline="") as f:
        outcomes = {row["outcome"] for row in csv.DictReader(f)}
    assert outcomes and all(o.startswith(outcome) for o in outcomes), outcomes
    row = next(line for line in output.splitlines() if line.startswith("error rate"))
    assert row.split()[-4:] == ["<=", "0", "1", "FAIL"]
