"""Two gateway processes share where adapters are through a real Redis; without Redis each routes alone.

A fake engine with two LoRA slots; three adapters sent through gateway A only. vLLM's LRU (the fake
engine's) then holds the last two, while all three stay listed in ``/v1/models``. Gateway B, which
sent nothing, must know which two are resident (its ``inferstack_adapter_replicas``), and route on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

import inferstack_devstack as devstack
from inferstack.bounds import MAX_MODEL_LENGTH
from inferstack.config import Adapters as AdapterSettings
from inferstack.config import RedisSettings
from inferstack.filters.dependency import DependencyMetrics, RedisHealth
from inferstack.upstream.adapter_share import KEEP, SharedUse, key_of
from inferstack.upstream.adapters import AdapterPlacement, ReplicaAdapters
from inferstack_fake_engine import Behaviour, EngineConfig, running_engine

from ..filters.conftest import redis_url  # noqa: F401  (the real redis-server fixture)
from ..filters.test_redis_down import TIMEOUT, dead_redis
from ..gateway_harness import running_gateway
from ..waiting import until

ADAPTERS = ("a1", "a2", "a3")


def write_catalog(tmp_path: Path) -> Path:
    adapters = {}
    for name in ADAPTERS:
        (tmp_path / name).mkdir()
        adapters[name] = {
            "base": "fake-model",
            "versions": [{"served_name": name, "source": str(tmp_path / name), "weight_percent": 100}],
        }
    path = tmp_path / "catalog.json"
    path.write_text(
        json.dumps(
            {
                "models": {"fake-model": {"lora": {"max_loras": 2, "adapters_uri": ""}}},
                "aliases": {},
                "adapters": adapters,
            }
        )
    )
    return path


def engine_config() -> EngineConfig:
    return EngineConfig(
        models=("fake-model",),
        max_loras=2,
        runtime_lora_updating=True,
        behaviour=Behaviour(lora_load_delay=0.01, output_tokens=2),
    )


async def metrics(admin: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(admin + "/metrics")).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= ls)


async def complete(gateway: str, model: str) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(gateway + "/v1/completions", json={"model": model, "prompt": "x", "max_tokens": 2})
        assert resp.status_code == 200, resp.text


@contextlib.asynccontextmanager
async def gateways(engine: str, catalog: Path, run_dir: Path, redis: str) -> AsyncIterator[list[devstack.Service]]:
    stack = devstack.Stack(run_dir=run_dir)
    env = {
        "INFERSTACK_AUTH_ENABLED": "false",
        "INFERSTACK_TENANCY__CACHE__ENABLED": "false",
        "INFERSTACK_CATALOG_FILE": str(catalog),
        "INFERSTACK_ROUTING_POLICY": "adapter_affinity",
        "INFERSTACK_REDIS_URL": redis,
        "INFERSTACK_ADAPTERS__SHARE_INTERVAL": "0.1",
        "INFERSTACK_HEALTH__INTERVAL": "0.2",
        # Not a test of timeouts (the dead-Redis tests below are): at the default 0.5 s a loaded CI
        # machine timed out an exchange with the live Redis and counted a dependency error (p19's run).
        "INFERSTACK_TENANCY__REDIS__CONNECT_TIMEOUT": "5",
        "INFERSTACK_TENANCY__REDIS__COMMAND_TIMEOUT": "5",
    }
    # Each is started in a thread (it waits for /readyz, which needs this loop's engine to answer), one
    # after the other: started at once, both could pick the same free port before either bound it.
    try:
        yield [await asyncio.to_thread(devstack.start_gateway, stack, [engine], env=env, timeout=30) for _ in range(2)]
    finally:
        await asyncio.to_thread(stack.stop)


async def test_a_second_gateway_knows_what_the_first_made_resident(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    catalog = write_catalog(tmp_path)
    async with (
        running_engine(engine_config()) as engine,
        gateways(engine, catalog, tmp_path / "run", redis_url) as (a, b),
    ):
        for name in ADAPTERS:  # through A only: the engine's LRU ends with a2, a3; a1 was evicted
            await complete(a.url, name)
        async with httpx.AsyncClient() as http:
            state = (await http.get(engine + "/_fake/lora")).json()
        assert state["resident"] == ["a2", "a3"] and state["registered"] == ["a1", "a2", "a3"]

        async def b_agrees() -> bool:
            found = await metrics(b.admin_url)
            held = {n: value(found, "inferstack_adapter_replicas", adapter=n) for n in ADAPTERS}
            return held == {"a1": 0.0, "a2": 1.0, "a3": 1.0}

        await until(b_agrees, "gateway B's record to match the engine's slots", within=10)
        # And B routes on it: a3 is where B never sent it, yet it is "loaded" there (no swap counted).
        await complete(b.url, "a3")
        found = await metrics(b.admin_url)
        assert value(found, "inferstack_adapter_routing_decisions_total", model="a3", reason="loaded") == 1
        assert value(found, "inferstack_adapter_loads_total") == 0
        assert value(found, "inferstack_dependency_errors_total", feature="adapters") == 0


@pytest.mark.parametrize("kind", ["refused", "hung"])
async def test_without_redis_a_gateway_routes_on_its_own_record_and_counts_it(tmp_path: Path, kind: str) -> None:
    catalog = write_catalog(tmp_path)
    async with (
        dead_redis(kind) as dead,
        running_engine(engine_config()) as engine,
        running_gateway(
            [engine],
            catalog_file=str(catalog),
            routing_policy="adapter_affinity",
            redis_url=dead,
            tenancy={"cache": {"enabled": False}, "redis": {"connect_timeout": TIMEOUT, "command_timeout": TIMEOUT}},
            adapters={"share_interval": 0.05},
        ) as (url, _),
    ):
        for name in ADAPTERS:
            await complete(url, name)

        async def counted() -> bool:
            found = await metrics(url.admin)
            return value(found, "inferstack_dependency_errors_total", dependency="redis", feature="adapters") >= 2

        await until(counted, "the skipped exchanges to be counted")
        await complete(url, "a3")
        found = await metrics(url.admin)
        assert value(found, "inferstack_adapter_routing_decisions_total", model="a3", reason="loaded") == 1


async def test_bad_data_in_redis_is_counted_and_neither_downs_redis_nor_ends_sharing(
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    """Redis answering with an error (our key holds another type) is not Redis down: the limits that
    fail closed keep working and /readyz stays 200. A member that is not UTF-8 (another writer's) names
    no adapter and must not end the exchange loop: a later record from another gateway still counts."""
    catalog = write_catalog(tmp_path)
    redis = Redis.from_url(redis_url)
    async with running_engine(engine_config()) as engine:
        key = key_of(engine)
        await redis.set(key, "not a sorted set")
        try:
            async with running_gateway(
                [engine],
                catalog_file=str(catalog),
                routing_policy="adapter_affinity",
                redis_url=redis_url,
                # Redis marked down would stay down (no PING for a minute) and limits would refuse.
                tenancy={"cache": {"enabled": False}, "redis": {"limits": "closed", "check_interval": 60}},
                adapters={"share_interval": 0.05},
            ) as (url, _):
                for name in ADAPTERS:  # the engine's LRU: a2, a3 resident, a1 evicted
                    await complete(url, name)

                async def refused() -> bool:
                    found = await metrics(url.admin)
                    return value(found, "inferstack_dependency_errors_total", feature="adapters") >= 3

                await until(refused, "the refused exchanges to be counted")
                async with httpx.AsyncClient() as http:
                    assert (await http.get(url + "/readyz")).status_code == 200
                assert value(await metrics(url.admin), "inferstack_dependency_up", dependency="redis") == 1

                # Another gateway sends a1 there now; and someone wrote bytes that are not UTF-8.
                await redis.delete(key)
                seconds, micros = await redis.time()
                now = seconds * 1000 + micros // 1000
                await redis.zadd(key, {"a1": now + 1000, b"\xff\xfe": now + 1001})

                async def learned() -> bool:
                    found = await metrics(url.admin)
                    held = {n: value(found, "inferstack_adapter_replicas", adapter=n) for n in ADAPTERS}
                    return held["a1"] == 1.0 and held["a2"] == 0.0

                await until(learned, "the other gateway's send of a1 to count")
        finally:
            await redis.delete(key)
            await redis.aclose()


async def test_a_record_holding_far_more_than_any_gateway_writes_is_read_bounded(
    redis_url: str,  # noqa: F811
) -> None:
    """Redis is shared: a sorted set under our key may hold what no gateway wrote (a buggy writer, an
    operator's experiment). The exchange reads at most the ``KEEP`` most recent members, and a member
    longer than a model name can be (no request could name it) is no adapter."""
    redis = Redis.from_url(redis_url)
    url = "http://replica-of-garbage:8000"
    key = key_of(url)
    try:
        seconds, _ = await redis.time()
        now = seconds * 1000
        await redis.zadd(key, {f"junk-{i}": now - 100_000 + i for i in range(20_000)})
        await redis.zadd(key, {"x" * (MAX_MODEL_LENGTH + 1): now + 1, "recent": now + 2})
        placement = AdapterPlacement()
        placement.replicas[url] = ReplicaAdapters()  # a replica with no slot count known: nothing trims
        health = RedisHealth(redis, RedisSettings(), DependencyMetrics(CollectorRegistry()), frozenset())
        shared = SharedUse(redis, health, placement, AdapterSettings(share_interval=1))
        assert await shared.exchange()
        resident = list(placement.replicas[url].resident)
        assert len(resident) <= KEEP
        assert resident[-1] == "recent" and "x" * (MAX_MODEL_LENGTH + 1) not in resident
        assert resident[:-1] == [f"junk-{i}" for i in range(20_000 - len(resident) + 1, 20_000)]
    finally:
        await redis.delete(key)
        await redis.aclose()
