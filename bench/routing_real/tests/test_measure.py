"""The bench's arithmetic on what it scraped and recorded (no engines): counters across a restart, a
policy's figures by phase, the turn annotations, the run's summary; and its command line."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Last, as test_turn_log does: bench/routing has a workload.py (and a run.py) too.
sys.path.extend(str(p) for p in Path(__file__).resolve().parents[1:3])

import measure
from measure import COUNTERS, annotate, labels_of, per_replica, policy_report, summary, vs
from turn_log import TimedIndex

from inferstack.kvcache.blocks import prompt_block_hashes
from inferstack.kvcache.wire import Batch, BlockRemoved, BlockStored

HERE = Path(__file__).resolve().parents[1]
HITS, QUERIES, PROMPT, PREEMPT = COUNTERS


def workload() -> Any:
    """This bench's workload.py by its path: ``workload`` may name bench/routing's in this session."""
    spec = importlib.util.spec_from_file_location("routing_real_workload", HERE / "workload.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


A, B = "http://a", "http://b"


def counts(hits: float, queries: float, prompt: float = 0.0, preemptions: float = 0.0) -> dict[str, float]:
    return {HITS: hits, QUERIES: queries, PROMPT: prompt, PREEMPT: preemptions, **dict.fromkeys(measure.TIMINGS, 0.0)}


def test_a_restarted_replica_counts_what_its_old_process_counted_plus_its_new_one() -> None:
    before = {A: counts(10, 100, 50), B: counts(0, 0)}
    after = {A: counts(30, 40, 20), B: counts(5, 10, 7, 1)}  # A's new process counts from 0
    lost = {A: counts(20, 60, 30)}  # A's old process over the run: read just before its stop
    out = per_replica(before, after, lost)
    keys = ("hit_rate", "hits", "queries", "prompt_tokens", "preemptions")
    assert {k: out[A][k] for k in keys} == {
        "hit_rate": 0.5,
        "hits": 50,
        "queries": 100,
        "prompt_tokens": 50,
        "preemptions": 0,
    }
    assert {k: out[B][k] for k in keys} == {
        "hit_rate": 0.5,
        "hits": 5,
        "queries": 10,
        "prompt_tokens": 7,
        "preemptions": 1,
    }


def timed(queue: float, prefill: float, ttft: float, requests: float) -> dict[str, float]:
    sums = {"request_queue_time": queue, "request_prefill_time": prefill, "time_to_first_token": ttft}
    return {
        **counts(0, 0),
        **{f"vllm:{k}_seconds_sum": v for k, v in sums.items()},
        **{f"vllm:{k}_seconds_count": requests for k in sums},
    }


def test_the_engines_timings_split_the_clients_ttft_across_a_restart() -> None:
    before = {A: timed(1.0, 1.0, 3.0, 10), B: timed(0, 0, 0, 0)}
    after = {A: timed(0.5, 1.0, 2.0, 5), B: timed(1.0, 2.0, 4.0, 10)}  # A restarted: its new process
    lost = {A: {k: v - before[A][k] for k, v in timed(2.5, 3.0, 8.0, 20).items()}}  # the old one's run
    replicas = per_replica(before, after, lost)
    # 25 requests: queue (1.5 + 0.5 + 1.0) / 25, prefill (2 + 1 + 2) / 25, engine TTFT (5 + 2 + 4) / 25.
    timing = measure.engine_timing(replicas, [{"ttft": 0.5}, {"ttft": 0.6}, {"ttft": None}])
    assert timing == {
        "client_ttft_s": 0.55,
        "engine_ttft_s": 0.44,
        "queue_s": 0.12,
        "prefill_s": 0.2,
        "before_the_engine_s": 0.11,
        "front_end_s": 0.12,
    }
    assert measure.engine_timing({}, [])["front_end_s"] is None  # nothing measured: no figure


def record(phase: str, direct: bool, cached: int, prompt: int, oracle: int, ttft: float) -> dict[str, object]:
    return {
        "id": f"p/{ttft}/0",
        "phase": phase,
        "direct": direct,
        "prompt": prompt,
        "prompt_tokens": prompt,
        "cached": cached,
        "oracle": oracle,
        "ttft": ttft,
    }


def test_a_policy_report_splits_routed_turns_by_phase_and_leaves_direct_and_failed_ones_out() -> None:
    records = [
        record("all_up", False, 50, 100, 80, 0.1),
        record("one_down", False, 0, 100, 40, 0.3),
        record("all_up", True, 100, 100, 0, 9.0),  # direct: the engines' figures, not the routed ones
        {"id": "p/9/9", "phase": "all_up", "direct": False, "prompt": 100, "error": "502 bad", "ttft": 9.0},
    ]
    replicas = {A: {"hits": 3.0, "queries": 4.0, "prompt_tokens": 30.0, "preemptions": 0.0}}
    replicas[B] = {"hits": 1.0, "queries": 4.0, "prompt_tokens": 10.0, "preemptions": 2.0}
    decided = {("pp", "prefix"): 2.0, ("rr", "rr"): 5.0}
    now = {("pp", "prefix"): 4.0, ("pp", "load"): 1.0, ("rr", "rr"): 9.0}
    report = policy_report("pp", records, replicas, decided, now, 12.34, None)
    assert (report["requests"], report["routed_requests"], report["direct_requests"], report["errors"]) == (4, 2, 1, 1)
    assert report["error_samples"] == ["502 bad"]
    assert report["seconds"] == 12.3 and report["restart"] is None
    assert report["hit_rate"] == 0.5 and report["preemptions"] == 2.0
    assert report["routed_hit_rate"] == 0.25 and report["oracle_hit_rate"] == 0.6
    assert report["phases"]["all_up"] == {"requests": 1, "routed_hit_rate": 0.5, "oracle_hit_rate": 0.8}
    assert report["phases"]["back_cold"] == {"requests": 0, "routed_hit_rate": 0.0, "oracle_hit_rate": 0.0}
    assert report["ttft_p50_s"] == 0.1 and report["ttft_p90_s"] == 0.1  # the lower of two, as before the split
    assert report["load_max_over_mean"] == 1.5
    assert report["decisions"] == {"prefix": 2.0, "load": 1.0}  # this policy's, during the run only


def test_labels_are_read_from_the_scraped_label_text() -> None:
    assert labels_of('policy="precise_prefix",reason="prefix_match"}') == {
        "policy": "precise_prefix",
        "reason": "prefix_match",
    }


def test_a_turn_is_annotated_with_the_choice_and_why_the_held_prefix_was_not_hit() -> None:
    tokens = list(range(300))  # two full blocks of 128 and a rest
    chain = prompt_block_hashes(tokens, 128)
    index = TimedIndex()
    index.apply(A, Batch(1, 100.0, (BlockStored(tuple(chain), None, (), 128),)), 0.0, 100.0)
    index.apply(A, Batch(2, 102.0, (BlockRemoved((chain[1],)),)), 0.0, 102.1)  # scheduled after the send
    turn = {"id": "pp/0/0", "held": {A: 256, B: 0}, "cached": 128, "sent": 101.0}
    access = {"pp/0/0": {"upstream": A, "reason": "prefix_match", "prefix_blocks": 2}}
    annotate([turn], access, index.removals, {(0, 0): tokens})
    assert turn["upstream"] == A and turn["reason"] == "prefix_match" and turn["prefix_blocks"] == 2
    # Published after the send by a step scheduled before it (the batch before it is from 100 s).
    assert turn["lost_cause"] == "evicted_in_step_at_send"
    unjoined = {"id": "pp/0/1", "held": {A: 256}, "cached": 0, "sent": 101.0}
    annotate([unjoined], access, index.removals, {(0, 1): tokens})
    assert unjoined["upstream"] is None and "lost_cause" not in unjoined


def test_the_summary_compares_policies_that_ran_and_leaves_the_others_out() -> None:
    args = argparse.Namespace(kv_blocks=2, out=None)
    results = {"round_robin": {"hit_rate": 0.2, "routed_hit_rate": 0.1}}
    results["precise_prefix"] = {"hit_rate": 0.5, "routed_hit_rate": 0.4, "oracle_hit_rate": 0.8}
    tokens = {(0, 0): [1] * 100, (0, 1): [1] * 300}
    Route = workload().Route
    plan = {(0, 0): Route(0, None), (0, 1): Route(None, 1)}
    out = summary(args, results, tokens, plan, [64, 128], [(1.0, 2.0, 3.0)], {A: 512.0})
    assert out["workload"]["routed_turns"] == 1 and out["workload"]["direct_turns"] == 1
    assert out["workload"]["kv_over_system_prompts"] == round(256 / 192, 3)
    assert out["precise_vs_round_robin"] == 2.5 and out["routed_precise_vs_round_robin"] == 4.0
    assert out["precise_vs_oracle"] == 0.5
    assert out["precise_vs_prefix_affinity"] is None  # prefix_affinity did not run
    assert vs({"x": 1.0}, {"x": 0.0}, "x") is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], {"plan": "default", "tenants": 12, "conversations": 3, "concurrency": 5}),
        (["--plan", "pressure"], {"plan": "pressure", "tenants": 36, "conversations": 1, "concurrency": 12}),
        (["--plan", "pressure", "--concurrency", "3"], {"tenants": 36, "concurrency": 3}),  # flags win
        (["--plan", "interleaved"], {"tenants": 36, "conversations": 1, "concurrency": 5, "live": 10}),
        (["--concurrency", "4"], {"concurrency": 4, "live": 0}),  # 0: one conversation per worker
    ],
)
def test_the_command_line_applies_a_named_plan_under_the_flags(argv: list[str], expected: dict[str, object]) -> None:
    # A fresh interpreter: run.py and its siblings import each other by name (bench/routing's `run` and
    # `workload` may already be loaded under those names here); importing run imports every module.
    script = "import json, sys, run; print(json.dumps(vars(run.parse_args(sys.argv[1:])), default=str))"
    proc = subprocess.run(
        [sys.executable, "-c", script, *argv], cwd=HERE, capture_output=True, text=True, timeout=120, check=True
    )
    settings = json.loads(proc.stdout)
    assert {k: settings[k] for k in expected} == expected


def test_live_below_the_workers_is_refused() -> None:
    script = "import sys, run; run.parse_args(sys.argv[1:])"
    argv = ["--concurrency", "5", "--live", "3"]
    proc = subprocess.run([sys.executable, "-c", script, *argv], cwd=HERE, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--live must be 0 or at least --concurrency" in proc.stderr


def drive(queue: Any, workers: int) -> list[tuple[int, int]]:
    """The turns in the order sent when every answer comes back in the order sent (one at a time)."""
    sent: list[tuple[int, int]] = []
    out = [t for t in (queue.take() for _ in range(workers)) if t is not None]
    while out:
        c, t = out.pop(0)
        sent.append((c, t))
        queue.answered(c, t)
        if (turn := queue.take()) is not None:
            out.append(turn)
    return sent


def test_with_as_many_live_conversations_as_workers_each_sends_one_conversation_back_to_back() -> None:
    queue = workload().TurnQueue([3, 3, 3], [0, 1, 2], live=2)  # conversations taken up from the end
    sent = drive(queue, workers=2)
    assert sent == [(2, 0), (1, 0), (2, 1), (1, 1), (2, 2), (1, 2), (0, 0), (0, 1), (0, 2)]


def test_more_live_conversations_than_workers_queue_each_turn_behind_the_others() -> None:
    queue = workload().TurnQueue([2, 2, 2, 2], [0, 1, 2, 3], live=3)
    sent = drive(queue, workers=2)
    # Three under way, two in flight: a conversation's next turn waits for the front one to go first.
    assert sent == [(3, 0), (2, 0), (1, 0), (3, 1), (2, 1), (1, 1), (0, 0), (0, 1)]
    assert sorted(sent) == [(c, t) for c in range(4) for t in range(2)]  # every turn once, in its order
