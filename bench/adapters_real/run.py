"""``make bench-adapters-real``: adapter placement on real vLLM CPU replicas, judged by the engines' own logs.

    .venv/bin/python bench/adapters_real/run.py [--zipf 0.8 1.0 1.2 1.5] [--mix 32:16:8:4:2:1] [--caps 2.0:1.2 2.0:1.5]
        [--out FILE]

Starts two vLLM replicas of the tiny model with LoRA (``--max-loras 2``: two adapter slots each, and
vLLM's CPU-side cache of loaded adapters, ``max_cpu_loras``, defaults to the same 2), six random-weight
adapters registered on both (``--lora-modules``, as ``make up`` does for its static ones), and one
gateway that knows them from a catalog. For each policy it sends the same seeded, Zipf-skewed sequence
of adapter requests through the gateway (``--concurrency`` at once, streaming, ``x-inferstack-routing-policy``):
round robin once, ``adapter_affinity`` once per ``--caps`` pair ``IN_FLIGHT:TRAFFIC``, the two bounds of
its per-replica cap, the ``adapter_bound`` filter (``INFERSTACK_ROUTING__ADAPTER_LOAD_FACTOR`` and
``INFERSTACK_ROUTING__ADAPTER_TRAFFIC_FACTOR``; the gateway's defaults, 2.0:1.2, first; a fresh gateway
each, the engines stay up), once per ``--zipf`` exponent (the same engines), and reports. With
``--gateways N`` the requests go to N gateway processes in turn (as a load balancer spreads them), and
``--share off on`` runs ``adapter_affinity`` once with each gateway on its own record and once with the
record shared through a Redis the bench starts (docs/adapters.md, "Several gateways").

- ``adapter_loads``: loads of an adapter's weights from disk into an engine, counted in the engines' own
  logs: vLLM's ``LRUCacheWorkerLoRAManager`` loads an adapter that is not in its cache and evicts the least
  recently used one; each load logs ``Adding lora`` (``vllm.lora.model_manager`` at DEBUG, switched on
  for that logger only with ``VLLM_LOGGING_CONFIG_PATH``). ``slot_activations`` (``Activating LoRA``)
  counts adapters put into a slot of the running batch. The gateway's own count
  (``inferstack_adapter_loads_total``) is reported next to it when the gateway exports it;
- TTFT p50/p90 (client side, to the first content chunk) and ``load_max_over_mean``: requests per
  replica from the engines' ``vllm:request_success_total``, the busiest over the mean;
- ``offline_bounds_adapter_loads``: what the same sequence allows at best (``ceiling.py``), to judge the
  figures against: round robin on LRU engines, the best static split of the adapters over the
  replicas at max/mean <= 1.25, the best any router can do with LRU engines knowing the whole
  sequence (``best_dynamic_lru``), and stronger bounds.

Loads do not depend on timing as much as TTFT does; on a shared 2-core machine TTFT is noisy (the
load average is recorded). The engines keep their adapter caches from one policy to the next: at most
four loads (two slots on two replicas) differ from a fresh start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from ceiling import bounds, parse_mix, weighted_sequence, zipf_sequence  # noqa: E402  (this script's folder is on the path)
from prom_text import scrape, total  # noqa: E402
from results_file import emit  # noqa: E402

import inferstack_devstack as devstack  # noqa: E402
from inferstack_engine import tinylora, tinymodel_build  # noqa: E402
from inferstack_engine.vllm import EngineOptions  # noqa: E402

MODEL = "tiny-llama"
POLICIES = ("round_robin", "adapter_affinity")
REQUESTS = "vllm:request_success_total"
GATEWAY_LOADS = "inferstack_adapter_loads_total"
LOAD_LINE = re.compile(rb"\[vllm\.lora\.model_manager\] Adding lora\. Model id: (\d+)")
ACTIVATE_LINE = re.compile(rb"\[vllm\.lora\.model_manager\] Activating LoRA\. int id: (\d+)")
# vLLM's own logging, but vllm.lora.model_manager at DEBUG: its load and activation lines are the evidence.
LOGGING_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "vllm": {
            "()": "vllm.logging_utils.NewLineFormatter",
            "datefmt": "%m-%d %H:%M:%S",
            "format": "%(levelname)s %(asctime)s [%(name)s] %(message)s",
        }
    },
    "handlers": {
        "vllm": {"class": "logging.StreamHandler", "formatter": "vllm", "level": "DEBUG", "stream": "ext://sys.stdout"}
    },
    "loggers": {
        "vllm": {"handlers": ["vllm"], "level": "INFO", "propagate": False},
        "vllm.lora.model_manager": {"level": "DEBUG"},
    },
}


def cap_pair(text: str) -> tuple[float, float]:
    """``IN_FLIGHT:TRAFFIC`` (``2.0:1.2``): adapter_bound's two factors."""
    in_flight, _, traffic = text.partition(":")
    return float(in_flight), float(traffic or "1.2")


def code_commit() -> str:
    """The commit benched, with ``-dirty`` when the work tree differs from it."""
    git = ["git", "-C", str(REPO)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return commit + ("-dirty" if dirty.stdout.strip() else "")


def adapter_names(count: int) -> list[str]:
    return [f"bench-{i}" for i in range(count)]


def catalog(dirs: dict[str, Path], max_loras: int) -> dict[str, Any]:
    """The gateway's catalog: the model, and each adapter with one version whose source is its directory."""
    return {
        "models": {
            MODEL: {
                "task": "generate",
                "aliases": [],
                "priority": 50,
                "max_replicas": 2,
                "prices": {"prompt_per_1m": 0.0, "completion_per_1m": 0.0},
                "lora": {"max_loras": max_loras, "max_rank": 8, "adapters_uri": f"{next(iter(dirs.values())).parent}/"},
            }
        },
        "aliases": {},
        "adapters": {
            name: {
                "base": MODEL,
                "owner": "bench",
                "rank": 8,
                "versions": [{"served_name": f"{name}@v1", "source": f"{path}/", "weight_percent": 100}],
            }
            for name, path in dirs.items()
        },
    }


def count_lines(log: Path, start: int, pattern: re.Pattern[bytes]) -> int:
    with log.open("rb") as f:
        f.seek(start)
        return len(pattern.findall(f.read()))


class Bench:
    """Requests go to the gateways in turn (request i to gateway i mod n), as a load balancer spreads them."""

    def __init__(
        self, session: aiohttp.ClientSession, engines: dict[str, Path], gateways: list[devstack.Service]
    ) -> None:
        self.session, self.engines = session, engines
        self.gateways = [g.url for g in gateways]
        self.admins = [g.admin_url for g in gateways]

    async def metrics(self, url: str) -> dict[tuple[str, str], float]:
        async with self.session.get(url + "/metrics") as resp:
            return scrape(await resp.text()) if resp.status == 200 else {}

    async def gateway_metrics(self) -> dict[tuple[str, str], float]:
        """Every gateway's samples, summed."""
        summed: dict[tuple[str, str], float] = {}
        for admin in self.admins:
            for key, value in (await self.metrics(admin)).items():
                summed[key] = summed.get(key, 0.0) + value
        return summed

    async def request(self, policy: str, adapter: str, prompt: str, ttft: list[float], gateway: str) -> None:
        payload = {
            "model": adapter,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 8,
            "stream": True,
            "ignore_eos": True,
        }
        headers = {"x-inferstack-routing-policy": policy}
        started = time.perf_counter()
        async with self.session.post(gateway + "/v1/chat/completions", json=payload, headers=headers) as resp:
            assert resp.status == 200, f"{resp.status}: {await resp.text()}"
            first = None
            async for line in resp.content:
                if first is None and line.startswith(b"data: {") and b'"content":"' in line.replace(b" ", b""):
                    first = time.perf_counter() - started
            ttft.append(first if first is not None else time.perf_counter() - started)

    async def run_policy(self, policy: str, sequence: list[str], concurrency: int, seed: int) -> dict[str, Any]:
        offsets = {url: log.stat().st_size for url, log in self.engines.items()}
        before = {url: await self.metrics(url) for url in self.engines}
        gw_before = await self.gateway_metrics()
        rng = random.Random(seed)
        prompts = [f"Request {i}: " + " ".join(rng.choice(WORDS) for _ in range(40)) for i in range(len(sequence))]
        ttft: list[float] = []
        todo = list(enumerate(sequence))
        todo.reverse()

        async def worker() -> None:
            while todo:
                i, adapter = todo.pop()
                await self.request(policy, adapter, prompts[i], ttft, self.gateways[i % len(self.gateways)])

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.5)  # the last lines reach the logs
        per_replica: dict[str, dict[str, float]] = {}
        for url, log in self.engines.items():
            after = await self.metrics(url)
            per_replica[url] = {
                "requests": total(after, "vllm:request_success_total")
                - total(before[url], "vllm:request_success_total"),
                "adapter_loads": count_lines(log, offsets[url], LOAD_LINE),
                "slot_activations": count_lines(log, offsets[url], ACTIVATE_LINE),
            }
        gw_after = await self.gateway_metrics()
        gateway_loads = total(gw_after, "inferstack_adapter_loads_total") - total(
            gw_before, "inferstack_adapter_loads_total"
        )
        decisions = {
            labels: value - gw_before.get((name, labels), 0.0)
            for (name, labels), value in gw_after.items()
            if name == "inferstack_adapter_routing_decisions_total" and value - gw_before.get((name, labels), 0.0)
        }
        loads = [r["requests"] for r in per_replica.values()]
        ordered = sorted(ttft)
        return {
            "requests": len(ordered),
            "seconds": round(elapsed, 1),
            "adapter_loads": sum(int(r["adapter_loads"]) for r in per_replica.values()),
            "slot_activations": sum(int(r["slot_activations"]) for r in per_replica.values()),
            "gateway_adapter_loads": gateway_loads
            if any(n == "inferstack_adapter_loads_total" for n, _ in gw_after)
            else None,
            "ttft_p50_s": round(statistics.median(ordered), 4),
            "ttft_p90_s": round(ordered[int(0.9 * (len(ordered) - 1))], 4),
            "load_max_over_mean": round(max(loads) / statistics.mean(loads), 3) if sum(loads) else None,
            "adapter_decisions": decisions,
            "per_replica": per_replica,
        }


WORDS = ["river", "stone", "ledger", "harbour", "winter", "signal", "garden", "copper", "meadow", "lantern"]


def start_engines(stack: devstack.Stack, dirs: dict[str, Path], args: argparse.Namespace) -> list[devstack.Service]:
    config = stack.run_dir / "vllm-logging.json"
    config.write_text(json.dumps(LOGGING_CONFIG))
    modules = [f"{name}@v1={path}" for name, path in dirs.items()]
    options = EngineOptions(
        extra_args=(
            "--enable-lora",
            f"--max-loras={args.max_loras}",
            "--max-lora-rank=8",
            "--lora-modules",
            *modules,
        )
    )
    env = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_LOGGING_CONFIG_PATH": str(config)}
    ports = [devstack.free_port() for _ in range(args.replicas)]
    with ThreadPoolExecutor(args.replicas) as pool:  # start together: each takes a minute or more
        return list(
            pool.map(
                lambda port: devstack.start_engine(
                    stack, str(devstack.DEFAULT_MODEL_DIR), MODEL, port=port, options=options, env=env
                ),
                ports,
            )
        )


def start_redis(stack: devstack.Stack) -> str:
    """A redis-server for the gateways' shared adapter record (persistence off), stopped with the stack."""
    port = devstack.free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    service = stack.start(f"redis-{port}", argv, f"redis://127.0.0.1:{port}/0")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return service.url
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not start; last lines:\n{service.log_tail()}")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    devstack.RUN_DIR.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-adapters-real-", dir=devstack.RUN_DIR))
    stack = devstack.Stack(run_dir=run_dir, progress=lambda m: print(m, file=sys.stderr))
    tinymodel_build(devstack.DEFAULT_MODEL_DIR)
    names = adapter_names(args.adapters)
    dirs = {name: tinylora.build(run_dir / "adapters" / f"{name}@v1", seed=tinylora.seed_for(name)) for name in names}
    commit = code_commit()
    load_before = os.getloadavg()
    try:
        redis_url = start_redis(stack) if "on" in args.share else ""
        engines = start_engines(stack, dirs, args)
        catalog_file = run_dir / "catalog.json"
        catalog_file.write_text(json.dumps(catalog(dirs, args.max_loras), indent=2))
        skews: dict[str, Any] = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
            plans = [(str(e), zipf_sequence(names, args.requests, e, args.seed)) for e in args.zipf]
            plans += [
                (f"mix {m}", weighted_sequence(names, args.requests, parse_mix(m, args.adapters), args.seed))
                for m in args.mix
            ]
            for label, sequence in plans:
                results = await run_skew(args, session, stack, engines, catalog_file, sequence, redis_url)
                skews[label] = summary(args, names, sequence, results)
        load_after = os.getloadavg()
    finally:
        stack.stop()
    return {
        "command": "nice -n 19 .venv/bin/python bench/adapters_real/run.py " + shlex.join(sys.argv[1:]),
        "code_commit": commit,
        "note": "adapter loads are counted in the engines' logs; TTFT was measured on a shared 2-core machine"
        " (load average below): noisy",
        "load_average": {
            "before_1m_5m_15m": [round(x, 2) for x in load_before],
            "after_1m_5m_15m": [round(x, 2) for x in load_after],
            "cores": os.cpu_count(),
        },
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "goal": ">= 3x fewer adapter loads than round robin at max/mean load <= 1.25",
        "skews": skews,
    }


async def run_skew(
    args: argparse.Namespace,
    session: aiohttp.ClientSession,
    stack: devstack.Stack,
    engines: list[devstack.Service],
    catalog_file: Path,
    sequence: list[str],
    redis_url: str,
) -> dict[str, Any]:
    """Every policy over ``sequence``: fresh gateways per cap (adapter_bound's two factors) and per
    ``--share`` mode (``on``: the gateways share their adapter record through ``redis_url``); round
    robin ignores both and runs once."""
    results: dict[str, Any] = {}
    setups = [(cap, share) for cap in args.caps for share in args.share]
    for i, ((in_flight, traffic), share) in enumerate(setups):
        gateways = devstack.Stack(run_dir=stack.run_dir, progress=stack.progress)
        env = {
            "INFERSTACK_AUTH_ENABLED": "false",
            "INFERSTACK_TENANCY__CACHE__ENABLED": "false",
            "INFERSTACK_CATALOG_FILE": str(catalog_file),
            "INFERSTACK_ROUTING__ADAPTER_LOAD_FACTOR": str(in_flight),
            "INFERSTACK_ROUTING__ADAPTER_TRAFFIC_FACTOR": str(traffic),
            **({"INFERSTACK_REDIS_URL": redis_url} if share == "on" else {}),
        }
        try:
            started = [
                devstack.start_gateway(gateways, [e.url for e in engines], env=env) for _ in range(args.gateways)
            ]
            bench = Bench(session, {e.url: e.log_path for e in engines}, started)
            for policy in args.policies:
                if policy == "round_robin" and i > 0:
                    continue
                key = (
                    policy
                    if policy == "round_robin"
                    else f"{policy} adapter_load_factor={in_flight} adapter_traffic_factor={traffic}"
                )
                if args.gateways > 1 and policy != "round_robin":
                    key += f" gateways={args.gateways} shared={share}"
                results[key] = await bench.run_policy(policy, sequence, args.concurrency, args.seed)
        finally:
            gateways.stop()
    return results


def summary(args: argparse.Namespace, names: list[str], sequence: list[str], results: dict[str, Any]) -> dict[str, Any]:
    """One skew's measurements beside what the sequence allows at best (``ceiling.bounds``)."""
    offline = bounds(sequence, names, args.replicas, args.max_loras)
    rr_offline = offline["round_robin_lru"]
    ceilings = {
        "round_robin_over_best_static_split": round(rr_offline / offline["best_static_split_lru"]["loads"], 2)
        if "best_static_split_lru" in offline
        else None,
        "round_robin_over_best_dynamic_lru": round(rr_offline / offline["best_dynamic_lru"], 2)
        if "best_dynamic_lru" in offline
        else None,
    }
    rr = results.get("round_robin")
    verdicts = {}
    for key, result in results.items():
        if key != "round_robin" and rr is not None:
            ratio = round(rr["adapter_loads"] / max(1, result["adapter_loads"]), 2)
            balanced = result["load_max_over_mean"] is not None and result["load_max_over_mean"] <= 1.25
            verdicts[key] = {"loads_round_robin_over_this": ratio, "goal_met": ratio >= 3 and balanced}
    return {
        "popularity": {n: sequence.count(n) for n in names},
        "offline_bounds_adapter_loads": offline,
        "offline_ceiling_vs_round_robin": ceilings,
        "policies": results,
        "verdicts": verdicts,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--max-loras", type=int, default=2, help="adapter slots per replica")
    parser.add_argument("--adapters", type=int, default=6)
    parser.add_argument("--requests", type=int, default=240, help="per policy")
    parser.add_argument(
        "--zipf",
        type=float,
        nargs="*",
        default=[0.8, 1.0, 1.2, 1.5],
        help="popularity of the i-th adapter: 1 / i**zipf; one run of every policy per exponent (none: --zipf alone)",
    )
    parser.add_argument(
        "--mix",
        nargs="*",
        default=[],
        help="explicit popularity mixes, one weight per adapter, e.g. 32:16:8:4:2:1 (bench/adapters_fake.py's);"
        " one run of every policy per mix, after the --zipf ones",
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--caps",
        type=cap_pair,
        nargs="+",
        default=[(2.0, 1.2)],
        metavar="IN_FLIGHT:TRAFFIC",
        help="adapter_affinity runs once per pair: INFERSTACK_ROUTING__ADAPTER_LOAD_FACTOR"
        " : INFERSTACK_ROUTING__ADAPTER_TRAFFIC_FACTOR (the defaults, 2.0:1.2, first)",
    )
    parser.add_argument("--gateways", type=int, default=1, help="gateway processes; request i goes to gateway i mod n")
    parser.add_argument(
        "--share",
        nargs="+",
        choices=["off", "on"],
        default=["off"],
        help="adapter_affinity once per mode: on = the gateways share their adapter record through a Redis"
        " the bench starts",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    with devstack.signals_stop():  # SIGTERM stops the children too
        raise SystemExit(main())
