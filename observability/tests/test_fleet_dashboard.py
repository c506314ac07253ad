"""The fleet dashboard's per-served-name queries, evaluated by promtool on made-up series: a base
model's panel shows it and its adapter versions (joined on inferstack_model_info, exported by every
gateway replica), not other models; without a catalog (no info series) the base model alone."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from observability.queries import load_dashboards, panel_queries, substitute

PROMTOOL = shutil.which("promtool")
BASE, ADAPTER, OTHER = "qwen2.5-7b-instruct", "sql-bot@v3", "llama-3.3-70b-instruct"
NS = 'namespace="inferstack"'


def _query(panel: str) -> str:
    queries = panel_queries(load_dashboards()["inferstack-fleet"])
    (q,) = [q for q in queries if q.panel == panel and q.panel_type == "timeseries" and q.ref == "A"]
    return substitute(q.expr, {"namespace": "inferstack", "model": BASE, "datasource": "x"}, rate_interval="5m")


def _requests(model: str, per_second: int) -> dict[str, str]:
    labels = f'{NS},model="{model}",endpoint="chat",status="200"'
    return {"series": f"inferstack_requests_total{{{labels}}}", "values": f"0+{60 * per_second}x10"}


def _info(model: str, base: str, adapter: str, gateway: str) -> dict[str, str]:
    labels = f'{NS},model="{model}",base_model="{base}",adapter="{adapter}",instance="{gateway}"'
    return {"series": f"inferstack_model_info{{{labels}}}", "values": "1x10"}


def _evaluate(tmp_path: Path, expr: str, series: list[dict[str, str]], expected: list[dict[str, Any]]) -> None:
    assert PROMTOOL, "promtool missing: run scripts/install-observability.sh"
    (tmp_path / "rules.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "q", "rules": [{"record": "panel", "expr": expr}]}]})
    )
    test = {"interval": "1m", "input_series": series, "promql_expr_test": [{"expr": "panel", "eval_time": "8m"}]}
    test["promql_expr_test"][0]["exp_samples"] = expected
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": [test]}))
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("catalog", [True, False], ids=["with catalog", "without catalog"])
def test_requests_per_served_name_of_the_chosen_model(tmp_path: Path, catalog: bool) -> None:
    series = [_requests(BASE, 1), _requests(ADAPTER, 2), _requests(OTHER, 10)]
    if catalog:  # two gateway replicas export the same info
        for gateway in ("10.0.0.1:8081", "10.0.0.2:8081"):
            series += [
                _info(BASE, BASE, "", gateway),
                _info(ADAPTER, BASE, "sql-bot", gateway),
                _info(OTHER, OTHER, "", gateway),
            ]
    expected = [{"labels": f'panel{{model="{BASE}"}}', "value": 1}]
    if catalog:
        expected.append({"labels": f'panel{{model="{ADAPTER}"}}', "value": 2})
    _evaluate(tmp_path, _query("Requests per second"), series, expected)


def test_routing_decisions_count_only_the_chosen_models_adapters(tmp_path: Path) -> None:
    def decisions(model: str, reason: str, per_second: int) -> dict[str, str]:
        labels = f'{NS},model="{model}",reason="{reason}"'
        return {
            "series": f"inferstack_adapter_routing_decisions_total{{{labels}}}",
            "values": f"0+{60 * per_second}x10",
        }

    series = [
        decisions(ADAPTER, "loaded", 3),
        decisions(ADAPTER, "free_slot", 1),
        decisions("contract-review@v1", "least_loaded", 5),  # an adapter of the other model
        _info(ADAPTER, BASE, "sql-bot", "10.0.0.1:8081"),
        _info("contract-review@v1", OTHER, "contract-review", "10.0.0.1:8081"),
    ]
    expected = [
        {"labels": 'panel{reason="loaded"}', "value": 3},
        {"labels": 'panel{reason="free_slot"}', "value": 1},
    ]
    _evaluate(tmp_path, _query("Routing decisions for adapter requests"), series, expected)
