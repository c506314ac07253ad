"""Prometheus rules: valid for promtool, unit-tested, every alert both firing and quiet, runbooks."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = sorted((ROOT / "rules").glob("*.yaml"))
RULE_TESTS = sorted((ROOT / "rules" / "tests").glob("*.yaml"))
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="run scripts/install-observability.sh")


def _alerts() -> dict[str, dict]:
    out = {}
    for f in RULES:
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                if "alert" in r:
                    out[r["alert"]] = r
    return out


def test_promtool_is_installed() -> None:
    # Not a skip: CI must have it (scripts/install-observability.sh).
    assert PROMTOOL, "promtool missing: run scripts/install-observability.sh"


@needs_promtool
def test_promtool_check_rules() -> None:
    res = subprocess.run([PROMTOOL, "check", "rules", *map(str, RULES)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@needs_promtool
@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(test_file: Path) -> None:
    res = subprocess.run([PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True,
                         cwd=test_file.parent)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for f in RULE_TESTS:
        for group in yaml.safe_load(f.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = set(_alerts())
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested quiet"


def test_every_alert_has_severity_summary_and_runbook_section() -> None:
    runbooks = (ROOT / "RUNBOOKS.md").read_text()
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"], name
        assert ann["runbook_url"].endswith("RUNBOOKS.md#" + name.lower()), name
        section = runbooks.split(f"## {name}\n", 1)
        assert len(section) == 2, f"no runbook section for {name}"
        body = section[1].split("\n## ", 1)[0]
        assert re.search(r"^1\. ", body, re.M), f"runbook of {name} has no steps"


def test_rules_use_current_vllm_metric_names_and_labels() -> None:
    text = "\n".join(f.read_text() for f in RULES)
    for gone in ("gpu_cache_usage_perc", "gpu_prefix_cache", "vllm:time_per_output_token_seconds"):
        assert gone not in text
    # vLLM labels models model_name: a vllm: selector on "model" matches nothing.
    assert not re.search(r"vllm:[a-z_]+\{[^}]*\bmodel=", text)


@needs_promtool
def test_compose_prometheus_config_is_valid() -> None:
    cfg = ROOT / "prometheus" / "prometheus.yml"
    res = subprocess.run([PROMTOOL, "check", "config", "--syntax-only", str(cfg)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
