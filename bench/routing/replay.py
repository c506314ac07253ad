"""Replay a ``bench/routing_real`` run in the simulator: the same plan, turn by turn, on simulated replicas.

    nice -n 10 .venv/bin/python bench/routing/replay.py bench/routing_real/results_pressure.json [--out FILE]
        [--policies ...] [--knobs '{"load_slack": 2}'] [--profiles '{"name": {...ProfileSpec}}']

What is the real run's (from its results JSON and its ``.turns.jsonl.gz``): the conversations, each
one's tenant (``bench/routing_real/workload.py`` regenerated with the run's seed and shape), every
turn's prompt length in the engine's tokens (the turn log), the path of every turn (the same gateway
or the same engine, ``routes``), the order in which ``--concurrency`` workers take conversations up
(``order``), ``max_tokens`` 4, replicas with ``--kv-blocks`` blocks of 128 tokens (the CPU backend's
block size) and the restart counted in turns (replica 0 leaves when a quarter of the turns have
started and comes back cold at half). What is not: the tokens themselves (a tenant's system prompt is
804 tokens, the run's mean, shared by its conversations, the rest of a prompt is the conversation's
own; a turn's prompt extends the previous one's) and the engines' speed (the simulator's
``SimParams`` timings; the real engines are CPU vLLM on a loaded 2-core machine), so the
interleaving of concurrent turns differs from the real run's.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import random
import shlex
import sys
import time
from hashlib import blake2b
from pathlib import Path
from typing import Any

from des import FleetSim, RunSettings
from sweep import ORACLE
from workload import Conversation, Workload, WorkloadShape

from inferstack.config import ProfileSpec
from inferstack.scheduling import make_policy
from inferstack_fake_engine.sim import SimParams

HERE = Path(__file__).resolve().parent
REAL = HERE.parent / "routing_real"
POLICIES = ("round_robin", "prefix_affinity", "precise_prefix", "oracle")
SYSTEM_TOKENS = 804
"""A tenant's system prompt in the tiny model's tokens: the pressure run's ``system_prompt_tokens_mean``."""
BLOCK_SIZE = 128
MAX_TOKENS = 4


def _real_workload() -> Any:
    # bench/routing has its own workload.py: load the real bench's under another name.
    spec = importlib.util.spec_from_file_location("routing_real_workload", REAL / "workload.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class Plan(Workload):
    """The real run's conversations in its workers' order; ``conversation()`` is None once all are taken."""

    def __init__(self, settings: dict[str, Any], prompts: dict[tuple[int, int], int]) -> None:
        self.shape = WorkloadShape()
        self.system_prompts = []
        real = _real_workload()
        n = settings["tenants"] * settings["conversations"]
        turns = settings["turns"]
        self.routes = real.routes(
            [[None] * turns] * n, settings["gateways"], settings["replicas"], settings["direct_share"], settings["seed"]
        )
        self.queue = list(real.order(n, settings["seed"]))
        self.prompts = prompts
        self.tenant_of = [c // settings["conversations"] for c in range(n)]
        self.total_turns = n * turns
        self._n = n
        self._turns = turns

    def conversation(self) -> Conversation | None:  # type: ignore[override]
        if not self.queue:
            return None
        c = self.queue.pop()  # from the end, as the real bench's ``TurnQueue`` takes ``order()``'s
        t = self._turns
        return Conversation(c, self.tenant_of[c], [""] * t, [MAX_TOKENS] * t, [0.0] * t)


class ReplayFleet(FleetSim):
    def __init__(self, policies: list[Any], params: SimParams, plan: Plan, settings: RunSettings) -> None:
        super().__init__(policies, params, plan, settings)
        self.plan = plan
        self.started = 0
        self.later_routed = 0
        self.whole_history = 0
        """Routed turns after a conversation's first, and those whose previous prompt's full blocks the
        best replica held when they were sent (the turn log's ``oracle`` against the previous prompt)."""
        self._chains: dict[int, list[bytes]] = {}
        self._texts: dict[int, str] = {}

    def _chain(self, c: int, blocks: int) -> list[bytes]:
        """Conversation ``c``'s engine block chain: its tenant's system blocks, then its own."""
        chain = self._chains.setdefault(c, [])
        shared = SYSTEM_TOKENS // self.params.block_size
        tenant = self.plan.tenant_of[c]
        prev = chain[-1] if chain else blake2b(b"tiny-llama", digest_size=16).digest()
        for i in range(len(chain), blocks):
            own = f"tenant{tenant}-{i}" if i < shared else f"conv{c}-{i}"
            prev = blake2b(prev + own.encode(), digest_size=16).digest()
            chain.append(prev)
        return chain[:blocks]

    def _text(self, c: int, tokens: int) -> str:
        """What the gateway's approximate scorer sees: 4 characters a token, the tenant's then the conversation's."""
        if c not in self._texts:
            tenant = self.plan.tenant_of[c]
            sys_rng, own_rng = random.Random(f"tenant-{tenant}"), random.Random(f"conv-{c}")
            letters = "abcdefghijklmnopqrstuvwxyz "
            self._texts[c] = "".join(sys_rng.choice(letters) for _ in range(SYSTEM_TOKENS * 4)) + "".join(
                own_rng.choice(letters) for _ in range(4 * 4096)
            )
        return self._texts[c][: tokens * 4]

    def _prompt(self, conv: Conversation, index: int) -> tuple[int, list[bytes], str]:
        tokens = self.plan.prompts[(conv.cid, index)]
        return tokens, self._chain(conv.cid, tokens // self.params.block_size), self._text(conv.cid, tokens)

    def _path(self, conv: Conversation, index: int, up: list[int]) -> tuple[int | None, int]:
        route = self.plan.routes[(conv.cid, index)]
        if route.gateway is not None:
            return route.gateway, -1
        return None, route.engine if route.engine in up else up[route.engine % len(up)]

    def _submit(self, now: float, conv: Conversation, index: int) -> None:
        # The restart counted in turns, as the real bench does: out at a quarter, back (cold) at half.
        total = self.plan.total_turns
        if self.started == total // 4:
            self.down.add(0)
        if self.started == total // 2:
            self._push(now, "rejoin", 0)
        self.started += 1
        up = [i for i in range(len(self.urls)) if i not in self.down]
        if index and self._path(conv, index, up)[0] is not None:
            _, blocks, _ = self._prompt(conv, index)
            previous = self.plan.prompts[(conv.cid, index - 1)] // self.params.block_size
            self.later_routed += 1
            self.whole_history += max(self.models[i].held(blocks) for i in up) >= previous
        super()._submit(now, conv, index)

    def _done(self) -> bool:
        return self.started == self.plan.total_turns and not self.turns


def real_whole_history(results: Path, block_size: int = BLOCK_SIZE) -> dict[str, float]:
    """Per policy, the share of routed turns after the first whose previous prompt the best replica held
    whole when they were sent (from the real run's turn log)."""
    with gzip.open(results.with_suffix(".turns.jsonl.gz"), "rt") as f:
        records = [json.loads(line) for line in f]
    prompts = {tuple(r["id"].rsplit("/", 2)[1:]): r["prompt"] for r in records}
    counts: dict[str, list[int]] = {}
    for r in records:
        policy, c, t = r["id"].rsplit("/", 2)
        if r["direct"] or t == "0" or "oracle" not in r:
            continue
        previous = prompts[(c, str(int(t) - 1))] // block_size * block_size
        n = counts.setdefault(policy, [0, 0])
        n[0] += 1
        n[1] += r["oracle"] >= previous
    return {k: round(whole / turns, 3) for k, (turns, whole) in counts.items()}


def load_real(results: Path) -> tuple[dict[str, Any], dict[tuple[int, int], int]]:
    report = json.loads(results.read_text())
    prompts: dict[tuple[int, int], int] = {}
    with gzip.open(results.with_suffix(".turns.jsonl.gz"), "rt") as f:
        for line in f:
            record = json.loads(line)
            _, c, t = record["id"].rsplit("/", 2)
            prompts.setdefault((int(c), int(t)), record["prompt"])
    return report, prompts


def sim_config(
    s: dict[str, Any], slowdown: float = 1.0, engine_delay: float = 0.0, max_num_seqs: int = 32
) -> tuple[SimParams, RunSettings]:
    """The simulator's engines and run for a real run's settings ``s``: its KV blocks of 128 tokens,
    replicas, gateways and concurrency; step timings times ``slowdown``; ``engine_delay`` from the
    routing decision to the engine."""
    base = SimParams()
    params = SimParams(
        num_blocks=s["kv_blocks"],
        block_size=BLOCK_SIZE,
        max_num_seqs=max_num_seqs,
        step_base=base.step_base * slowdown,
        decode_per_seq=base.decode_per_seq * slowdown,
        prefill_per_token=base.prefill_per_token * slowdown,
    )
    settings = RunSettings(
        replicas=s["replicas"],
        warmup=0.0,
        duration=1e9,
        gateways=s["gateways"],
        concurrency=s["concurrency"],
        live=s.get("live") or 0,
        engine_delay=engine_delay,
    )
    return params, settings


def replay(
    results: Path,
    policies: tuple[str, ...] = POLICIES,
    knobs: dict[str, Any] | None = None,
    profiles: dict[str, ProfileSpec] | None = None,
    slowdown: float = 1.0,
    engine_delay: float = 0.0,
    max_num_seqs: int = 32,
    loop: dict[str, int] | None = None,
) -> dict[str, Any]:
    """``slowdown``: the simulator's step timings times this; ``engine_delay``: ``RunSettings``';
    ``loop``: ``concurrency`` and ``live`` other than the run's (its conversations in another loop)."""
    report, prompts = load_real(results)
    s = {**report["settings"], **(loop or {})}
    params, settings = sim_config(s, slowdown, engine_delay, max_num_seqs)
    out: dict[str, Any] = {}
    for name in policies:
        gateways = [make_policy(name, {**ORACLE, **(profiles or {})}, **(knobs or {})) for _ in range(s["gateways"])]
        sim = ReplayFleet(gateways, params, Plan(s, prompts), settings)
        r = sim.run()
        assert sim.started == sim.plan.total_turns and not sim.turns, "the replay did not finish its plan"
        out[name] = {
            "hit_rate": round(r.prefix_hits / r.prefix_queries, 4),
            "routed_hit_rate": round(r.routed_cached_tokens / r.routed_prompt_tokens, 4),
            "oracle_at_send": round(r.oracle_cached_tokens / r.routed_prompt_tokens, 4),
            "whole_history_at_send": round(sim.whole_history / sim.later_routed, 3),
            "reasons": dict(sorted(r.reasons.items())),
        }
    return out


def ratios(p: dict[str, Any], name: str = "precise_prefix") -> dict[str, float | None]:
    def ratio(a: str, b: str, key: str = "hit_rate") -> float | None:
        return round(p[a][key] / p[b][key], 3) if a in p and b in p and p[b][key] else None

    out = {
        "vs_round_robin": ratio(name, "round_robin"),
        "vs_prefix_affinity": ratio(name, "prefix_affinity"),
        "vs_oracle": ratio(name, "oracle"),
    }
    if name in p:
        out["routed_vs_oracle_at_send"] = round(p[name]["routed_hit_rate"] / p[name]["oracle_at_send"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, nargs="+", help="bench/routing_real results (.turns.jsonl.gz beside)")
    ap.add_argument("--policies", nargs="+", default=list(POLICIES))
    ap.add_argument("--knobs", type=json.loads, default=None, help="routing settings for every policy (JSON)")
    ap.add_argument("--profiles", type=json.loads, default=None, help="extra profiles, as INFERSTACK_ROUTING__PROFILES")
    ap.add_argument("--slowdown", type=float, default=1.0, help="the simulator's step timings times this")
    ap.add_argument("--engine-delay", type=float, default=0.0, help="seconds from a routing decision to the engine")
    ap.add_argument("--max-num-seqs", type=int, default=32, help="running sequences per replica at most")
    ap.add_argument("--concurrency", type=int, default=None, help="workers, instead of the run's")
    ap.add_argument("--live", type=int, default=None, help="conversations under way at once, instead of the run's")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    loop = {k: v for k, v in (("concurrency", a.concurrency), ("live", a.live)) if v is not None}
    profiles = {k: ProfileSpec(**v) for k, v in (a.profiles or {}).items()}
    started, load = time.monotonic(), os.getloadavg()
    runs = []
    for path in a.results:
        real = json.loads(path.read_text())
        sim = replay(path, tuple(a.policies), a.knobs, profiles, a.slowdown, a.engine_delay, a.max_num_seqs, loop)
        keys = {"hit_rate": "hit_rate", "routed_hit_rate": "routed_hit_rate", "oracle_at_send": "oracle_hit_rate"}
        real_p = {k: {ours: v[theirs] for ours, theirs in keys.items()} for k, v in real["policies"].items()}
        for k, share in real_whole_history(path).items():
            real_p[k]["whole_history_at_send"] = share
        runs.append(
            {
                "real": str(path.relative_to(HERE.parents[1]) if path.is_absolute() else path),
                "plan": real["settings"].get("plan") or "default",
                "simulated": sim,
                "real_measured": real_p,
                "simulated_ratios": ratios(sim),
                "real_ratios": ratios(real_p),
            }
        )
        print(json.dumps(runs[-1]["simulated_ratios"]), json.dumps(runs[-1]["real_ratios"]), file=sys.stderr)
    report = {
        "command": "nice -n 10 .venv/bin/python bench/routing/replay.py " + shlex.join(argv or sys.argv[1:]),
        "knobs": a.knobs,
        "slowdown": a.slowdown,
        "engine_delay": a.engine_delay,
        "max_num_seqs": a.max_num_seqs,
        "loop": loop,
        "profiles": a.profiles,
        "runs": runs,
        "load_average_1_5_15": [[round(x, 1) for x in la] for la in (load, os.getloadavg())],
        "wall_seconds": round(time.monotonic() - started),
    }
    text = json.dumps(report, indent=2) + "\n"
    if a.out:
        a.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
