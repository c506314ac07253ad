"""The routing benchmark runs end to end on a short virtual window, and its headline holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run.py imports its siblings by name

import run


def test_short_run_writes_json_and_prefix_affinity_wins(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    assert run.main(["--duration", "60", "--warmup", "30", "--no-plot", "--no-deployment", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    by_policy = {r["policy"]: r for r in report["results"]}
    assert set(by_policy) == {"round_robin", "least_load", "prefix_affinity", "precise_prefix"}
    pa, rr = by_policy["prefix_affinity"], by_policy["round_robin"]
    assert pa["prefix_cache_hit_rate"] > rr["prefix_cache_hit_rate"] + 0.3
    assert pa["ttft_p50"] * 3 < rr["ttft_p50"]
    assert abs(pa["output_tokens_per_s"] / rr["output_tokens_per_s"] - 1) < 0.1  # equal offered load
    # precise_prefix reads the simulated replicas' KV events: as good as affinity on hits.
    assert by_policy["precise_prefix"]["prefix_cache_hit_rate"] > rr["prefix_cache_hit_rate"] + 0.3


def test_deployment_setup_spreads_turns_over_gateways_and_restarts_a_replica() -> None:
    from des import FleetSim, RunSettings
    from workload import Workload, WorkloadShape

    from inferstack.scheduling import make_policy

    settings = RunSettings(
        replicas=4, conversation_rate=0.5, warmup=20, duration=60, gateways=3, direct_share=0.2, restart=(0, 30, 20)
    )
    hits = {}
    for name in ("round_robin", "precise_prefix"):
        sim = FleetSim([make_policy(name) for _ in range(3)], run.REPLICA, Workload(WorkloadShape(), 1), settings)
        result = sim.run()
        turns = sum(result.reasons.values())
        assert 0.1 < result.reasons["direct"] / turns < 0.3
        assert sum(map(sum, sim.gateway_in_flight)) + sum(1 for t in sim.turns.values() if t.gateway is None) == sum(
            sim.in_flight
        )  # each gateway counts only its own requests
        assert not sim.down  # the restarted replica came back
        hits[name] = result.prefix_hits / result.prefix_queries
        # The oracle (the most any running replica held at send time) bounds what routing hit.
        assert 0 < result.routed_cached_tokens <= result.oracle_cached_tokens <= result.routed_prompt_tokens
    assert hits["precise_prefix"] > hits["round_robin"] * 1.25


def test_closed_loop_keeps_n_conversations_live_and_the_plan_order_uses_every_tenant() -> None:
    from collections import Counter

    from des import FleetSim, RunSettings
    from workload import Workload, WorkloadShape

    from inferstack.scheduling import make_policy

    shape = WorkloadShape(tenants=3, system_tokens=(200, 200), conversations_per_tenant=2)
    plan = Workload(shape, 1)
    assert Counter(plan.conversation().tenant for _ in range(6)) == {0: 2, 1: 2, 2: 2}  # then shuffled again
    settings = RunSettings(replicas=2, warmup=5, duration=30, concurrency=3)
    sim = FleetSim([make_policy("round_robin")], run.REPLICA, Workload(shape, 1), settings)
    result = sim.run()
    live = [sum(sample) for sample in result.in_flight_samples]
    assert max(live) == 3  # one turn in flight per conversation, three conversations at all times
    assert result.completed > 30


def test_more_live_conversations_than_workers_keep_their_turns_apart() -> None:
    from des import FleetSim, RunSettings
    from workload import Workload, WorkloadShape

    from inferstack.scheduling import make_policy

    shape = WorkloadShape(tenants=6, system_tokens=(200, 200), conversations_per_tenant=1)
    settings = RunSettings(replicas=2, warmup=5, duration=30, concurrency=2, live=4)
    sim = FleetSim([make_policy("round_robin")], run.REPLICA, Workload(shape, 1), settings)
    sent: list[int] = []
    submit = sim._submit

    def record(now: float, conv: object, index: int) -> None:
        sent.append(conv.cid)  # type: ignore[attr-defined]
        submit(now, conv, index)  # type: ignore[arg-type]

    sim._submit = record  # type: ignore[method-assign]
    result = sim.run()
    assert max(sum(sample) for sample in result.in_flight_samples) == 2  # two turns in flight at most
    assert len(sim.ready) == 2  # the other two live conversations wait for a worker
    # An answered conversation queues behind the two waiting ones: at least two other sends between
    # any conversation's consecutive turns (with live=2 it would be back to back on one worker).
    last: dict[int, int] = {}
    for i, cid in enumerate(sent):
        assert i - last.get(cid, -3) >= 3
        last[cid] = i
    assert result.completed > 15


def test_replay_sends_the_real_plans_turns_the_same_way() -> None:
    from replay import REAL, replay

    report = json.loads((REAL / "results_pressure.json").read_text())
    sim = replay(REAL / "results_pressure.json", ("round_robin",))["round_robin"]
    assert sum(sim["reasons"].values()) == report["workload"]["turns"]  # every turn of the plan, once
    assert sim["reasons"]["direct"] == report["workload"]["direct_turns"]  # the plan's own paths
    assert 0 < sim["routed_hit_rate"] < sim["oracle_at_send"] < 1


def test_replay_starts_conversations_in_the_real_benchs_order() -> None:
    from replay import Plan, _real_workload

    real = _real_workload()
    settings = {
        "tenants": 6,
        "conversations": 2,
        "turns": 3,
        "gateways": 3,
        "replicas": 3,
        "direct_share": 0.2,
        "seed": 4,
    }
    n = settings["tenants"] * settings["conversations"]
    plan = Plan(settings, {})
    replayed: list[int] = []
    while (conv := plan.conversation()) is not None:
        replayed.append(conv.cid)
    # The real bench: workers take the ready turns; a conversation's first turn is its start.
    queue = real.TurnQueue([3] * n, real.order(n, settings["seed"]), live=2)
    started: list[int] = []
    while (turn := queue.take()) is not None:
        c, t = turn
        if t == 0:
            started.append(c)
        queue.answered(c, t)
    assert replayed == started
    assert started != sorted(started)  # the order is the seed's, not the identity
