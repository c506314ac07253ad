"""The deployment the real-engine routing bench runs on, as in Kubernetes but on one machine.

``--replicas`` vLLM replicas of the tiny model with KV events, prefix caching and a small KV cache
(``--kv-blocks`` blocks each), ``--gateways`` gateway processes in front of them (each with its own
routing memory and its own subscription to the engines' KV events), and the bench's own
subscription: its oracle (``turn_log.TimedIndex``). Starting and stopping processes lives here; what
is sent through them lives in ``policy_run``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry
from turn_log import TimedIndex
from workload import WORDS

import inferstack_devstack as devstack
from inferstack.kvcache.metrics import KVMetrics
from inferstack.kvcache.subscriber import KVEventHub
from inferstack_engine import tinymodel_build
from inferstack_engine.vllm import EngineOptions
from inferstack_engine.vllm import stop as stop_process_group

MODEL = "tiny-llama"
ENGINE_ENV = {"VLLM_SERVER_DEV_MODE": "1"}  # /reset_prefix_cache between policies
ENGINE_START_TIMEOUT = 600.0  # seconds: three engines starting together on 2 shared cores


@dataclass
class Deployment:
    stack: devstack.Stack
    engines: list[devstack.Service]
    """Replaced in place when one restarts (same URL, new process)."""
    gateways: list[devstack.Service]
    hub: KVEventHub
    index: TimedIndex
    """The bench's view of every replica's cache (``hub``'s index), with removal times."""
    engine_rss_mib: dict[str, float]
    """Each engine's resident memory right after start."""

    @property
    def urls(self) -> list[str]:
        return [e.url for e in self.engines]


def start_engine(
    stack: devstack.Stack, kv_blocks: int, port: int, extra_args: tuple[str, ...] = ()
) -> devstack.Service:
    """One replica of the tiny model on ``port`` (``extra_args``: more vLLM flags); blocks until it serves
    (a minute or more)."""
    options = EngineOptions(extra_args=("--num-gpu-blocks-override", str(kv_blocks), *extra_args))
    return devstack.start_engine(
        stack, str(devstack.DEFAULT_MODEL_DIR), MODEL, port, ENGINE_START_TIMEOUT, options, ENGINE_ENV
    )


def engine_args(args: argparse.Namespace) -> tuple[str, ...]:
    """The bench's ``--engine-arg`` values: vLLM flags every replica starts with (and restarts with)."""
    return tuple(args.engine_arg or ())


def stop_engine(engine: devstack.Service) -> None:
    """SIGTERM the engine's process group, as Kubernetes does; SIGKILL after 20 s. Blocks."""
    stop_process_group(engine.process, 20.0)


def gateway_env(endpoints: dict[str, str], tokenizer: str, profiles: str | None) -> dict[str, str]:
    return {
        "INFERSTACK_AUTH_ENABLED": "false",
        "INFERSTACK_TENANCY__CACHE__ENABLED": "false",
        # turn_log reads these logs as data right after the last turn: each line written at once.
        "INFERSTACK_ACCESS_LOG_FLUSH_INTERVAL": "0",
        **devstack.kv_events_env(endpoints, {MODEL: str(devstack.DEFAULT_MODEL_DIR)} if tokenizer == "local" else None),
        "INFERSTACK_KV_EVENTS__TOKENIZER": tokenizer,
        **({"INFERSTACK_ROUTING__PROFILES": profiles} if profiles else {}),
    }


def rss_mib(pid: int) -> float:
    """Resident memory of a process group (the API server and its engine-core child), in MiB."""
    total_kib = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except (OSError, ProcessLookupError):
            continue
    return round(total_kib / 1024, 1)


@contextlib.asynccontextmanager
async def deployed(args: argparse.Namespace) -> AsyncIterator[Deployment]:
    """Engines, gateways and the bench's KV-event subscription; all stopped on exit (gateways first)."""
    devstack.RUN_DIR.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-routing-real-", dir=devstack.RUN_DIR))
    stack = devstack.Stack(run_dir=run_dir, progress=lambda m: print(m, file=sys.stderr))
    tinymodel_build(devstack.DEFAULT_MODEL_DIR)
    hub = None
    try:
        ports = [devstack.free_port() for _ in range(args.replicas)]
        with ThreadPoolExecutor(args.replicas) as pool:  # start together: each takes a minute or more
            engines = list(pool.map(lambda port: start_engine(stack, args.kv_blocks, port, engine_args(args)), ports))
        urls = [e.url for e in engines]
        memory = {e.url: rss_mib(e.process.pid) for e in engines}
        endpoints = {u: devstack.kv_events_endpoint(run_dir, u) for u in urls}
        env = gateway_env(endpoints, args.tokenizer, args.profiles)
        gateways = [devstack.start_gateway(stack, urls, env=env) for _ in range(args.gateways)]
        index = TimedIndex()
        hub = KVEventHub(index, KVMetrics(CollectorRegistry()), endpoints=endpoints)
        hub.set_urls(urls)
        yield Deployment(stack, engines, gateways, hub, index, memory)
    finally:
        if hub is not None:
            await hub.close()
        stack.stop()


async def warm_up(session: aiohttp.ClientSession, deployment: Deployment) -> None:
    """Until events flow to the bench's subscribers (ZMQ drops what precedes a subscription)."""
    urls = deployment.urls
    end = time.monotonic() + 120
    while any(deployment.index.block_size(u) is None for u in urls):
        assert time.monotonic() < end, "no KV events from the engines"
        for u in urls:
            # Any text long enough to fill a block (128 tokens); unseeded, as it is not measured.
            payload = {"model": MODEL, "prompt": " ".join(random.choice(WORDS) for _ in range(400)), "max_tokens": 1}
            async with session.post(u + "/v1/completions", json=payload) as resp:
                await resp.read()
        await asyncio.sleep(0.3)
