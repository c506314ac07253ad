"""Static checks of the generated dashboards: variables, data source, ids, valid PromQL, names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from observability.queries import all_queries, load_dashboards, panel_queries, substitute, variable_names

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = load_dashboards()
VARS = {"namespace": "inferstack", "model": "tiny-llama", "datasource": "prometheus"}
PROMTOOL = shutil.which("promtool")


def _recorded_names() -> set[str]:
    names = set()
    for f in (ROOT / "rules").glob("*.yaml"):
        for g in yaml.safe_load(f.read_text())["groups"]:
            names |= {r["record"] for r in g["rules"] if "record" in r}
    return names


def test_the_six_dashboards_exist() -> None:
    # One fleet dashboard with a model variable, not one per model (issue 15).
    assert set(DASHBOARDS) == {"inferstack-service", "inferstack-engines", "inferstack-gpus",
                               "inferstack-capacity", "inferstack-cost", "inferstack-fleet"}


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_variables_and_datasource(uid: str) -> None:
    d = DASHBOARDS[uid]
    names = variable_names(d)
    assert names[:2] == ["datasource", "namespace"]
    if uid != "inferstack-gpus":  # DCGM series carry no model label
        assert "model" in names
    for p in d["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_panel_ids_and_ref_ids_are_unique(uid: str) -> None:
    panels = DASHBOARDS[uid]["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and 0 not in ids
    for p in panels:
        refs = [t["refId"] for t in p.get("targets", [])]
        assert len(refs) == len(set(refs)), p["title"]


def test_every_query_filters_by_namespace_unless_cluster_scoped() -> None:
    for q in all_queries():
        if "$namespace" not in q.expr:
            assert re.search(r"karpenter_", q.expr), q.where


def test_model_variable_meets_the_right_label() -> None:
    for q in all_queries():
        for selector in re.findall(r"(vllm:[a-z_]+)\{([^}]*)\}", q.expr):
            assert 'model_name=~"$model"' in selector[1], q.where
        assert not re.search(r'\bmodel=~"\$model"', q.expr) or "inferstack" in q.expr, q.where


def test_no_removed_vllm_metric_names() -> None:
    text = json.dumps(DASHBOARDS)
    for gone in ("gpu_cache_usage_perc", "gpu_prefix_cache", "vllm:time_per_output_token_seconds"):
        assert gone not in text


def test_recorded_series_used_by_dashboards_exist() -> None:
    recorded = _recorded_names()
    used = {n for q in all_queries() for n in re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", q.expr)}
    assert used, "dashboards read no recorded series: the recording rules are unused"
    assert used - recorded == set()


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (variables substituted) as a recording rule's expression."""
    assert PROMTOOL, "promtool missing: run scripts/install-observability.sh"
    rules = [{"record": f"check:q{i}", "expr": substitute(q.expr, VARS)} for i, q in enumerate(all_queries())]
    f = tmp_path / "queries.yaml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}))
    res = subprocess.run([PROMTOOL, "check", "rules", str(f)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_substitute_rejects_unknown_variables() -> None:
    with pytest.raises(KeyError):
        substitute('up{model=~"$modle"}', VARS)
    assert substitute("rate(x[$__rate_interval]) ${namespace}", VARS) == "rate(x[1m]) inferstack"


def test_every_panel_has_a_query() -> None:
    for d in DASHBOARDS.values():
        titled = {q.panel for q in panel_queries(d)}
        for p in d["panels"]:
            if p["type"] != "row":
                assert p["title"] in titled, p["title"]
