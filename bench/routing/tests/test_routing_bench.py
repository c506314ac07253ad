"""The routing benchmark runs end to end on a short virtual window, and its headline holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run.py imports its siblings by name

import run


def test_short_run_writes_json_and_prefix_affinity_wins(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    assert run.main(["--duration", "60", "--warmup", "30", "--no-plot", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    by_policy = {r["policy"]: r for r in report["results"]}
    assert set(by_policy) == {"round_robin", "least_load", "prefix_affinity", "precise_prefix"}
    pa, rr = by_policy["prefix_affinity"], by_policy["round_robin"]
    assert pa["prefix_cache_hit_rate"] > rr["prefix_cache_hit_rate"] + 0.3
    assert pa["ttft_p50"] * 3 < rr["ttft_p50"]
    assert abs(pa["output_tokens_per_s"] / rr["output_tokens_per_s"] - 1) < 0.1  # equal offered load
    # precise_prefix reads the simulated replicas' KV events: as good as affinity on hits.
    assert by_policy["precise_prefix"]["prefix_cache_hit_rate"] > rr["prefix_cache_hit_rate"] + 0.3
