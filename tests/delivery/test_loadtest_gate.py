"""The release's load-test gate (.github/scripts/loadtest-gate.sh) run exactly as deploy-env.yml and
loadtest.yml call it (the same environment variables, `make loadtest` inside), for a few seconds
against a real gateway with auth on: requests must authenticate and the report must land in
REPORT_DIR, the folder the workflows upload."""

from __future__ import annotations

import csv
import os
import re
import subprocess
from pathlib import Path

import yaml

from ._tools import REPO, WORKFLOWS
from .conftest import Gateway

GATE = REPO / ".github" / "scripts" / "loadtest-gate.sh"
# The smoke profile's mix, shortened: 2 users for 4 s.
TINY = "extends: smoke\nshape: {name: steady, users: 2, duration: 4, ramp: 1}\n"


def _gate(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("HOST", "PROFILE", "SLO", "REPORT_DIR")}
    base.pop("INFERSTACK_API_KEY", None)
    profile = tmp_path / "tiny.yaml"
    profile.write_text(TINY)
    return subprocess.run(
        ["bash", str(GATE)],
        env={**base, "PROFILE": str(profile), **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=tmp_path,
    )


def _outcomes(report_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in report_dir.glob("requests-*.csv"):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    return counts


def test_the_gate_authenticates_and_writes_its_report_to_report_dir(gateway: Gateway, tmp_path: Path) -> None:
    report = tmp_path / "artifact"
    done = _gate({"HOST": gateway.url, "INFERSTACK_API_KEY": gateway.key, "REPORT_DIR": str(report)}, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (report / "report.html").exists() and (report / "verdict.json").exists(), sorted(report.iterdir())
    outcomes = _outcomes(report)
    assert outcomes and set(outcomes) == {"ok"}, outcomes  # no 401: every request authenticated
    assert not list((REPO / "loadtests" / "reports").glob(f"*{tmp_path.name}*"))


def test_a_wrong_key_fails_the_gate(gateway: Gateway, tmp_path: Path) -> None:
    report = tmp_path / "artifact"
    done = _gate({"HOST": gateway.url, "INFERSTACK_API_KEY": "isk-not-a-key", "REPORT_DIR": str(report)}, tmp_path)
    assert done.returncode == 3, done.stdout[-2000:]
    assert set(_outcomes(report)) == {"http_401"}


def test_the_gate_refuses_to_run_without_a_key(tmp_path: Path) -> None:
    done = _gate({"HOST": "http://127.0.0.1:9", "REPORT_DIR": str(tmp_path / "r")}, tmp_path)
    assert done.returncode != 0 and "INFERSTACK_API_KEY" in done.stderr


def test_the_workflows_call_the_gate_with_the_names_it_reads() -> None:
    """Every step that runs the gate sets exactly the variables the gate reads, the key under its one name."""
    needed = set(re.findall(r'^: "\$\{(\w+):\?', GATE.read_text(), re.M))
    assert needed == {"HOST", "INFERSTACK_API_KEY", "REPORT_DIR"}
    callers = 0
    for path in sorted(WORKFLOWS.glob("*.yml")):
        wf = yaml.load(path.read_text(), Loader=yaml.BaseLoader)
        for job in wf["jobs"].values():
            for step in job.get("steps", []):
                if "loadtest-gate.sh" not in step.get("run", ""):
                    continue
                callers += 1
                visible = {**wf.get("env", {}), **job.get("env", {}), **step.get("env", {})}
                assert needed <= set(visible), f"{path.name}: {step.get('name')} lacks {needed - set(visible)}"
                assert "LOADTEST_API_KEY" not in visible
    assert callers == 2, "deploy-env.yml and loadtest.yml both run the gate"
