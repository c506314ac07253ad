"""LoRA adapters through the gateway, with the ``openai`` client: adapter-aware routing
(``adapter_affinity``), on-demand loading (``POST /v1/load_lora_adapter``), the per-replica cap,
404 for unknown adapters, aliases and rollouts. Fake engines with LoRA slots (real HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from inferstack_fake_engine import Behaviour, EngineConfig, running_engine

from ..gateway_harness import GatewayURL, running_gateway

ADAPTERS = ("a1", "a2", "a3", "a4")


def catalog(tmp_path: Path) -> dict[str, Any]:
    """Base ``fake-model`` (2 slots), adapters a1..a4 and ``sql-bot`` (90/10 rollout), each in a local dir."""
    adapters: dict[str, Any] = {}
    for name in (*ADAPTERS, "sql-bot@v1", "sql-bot@v2", "broken@v1"):
        if name != "broken@v1":
            (tmp_path / name).mkdir()
    for name in (*ADAPTERS, "broken"):
        served = name if name in ADAPTERS else f"{name}@v1"
        adapters[name] = {
            "base": "fake-model",
            "versions": [{"served_name": served, "source": str(tmp_path / served), "weight_percent": 100}],
        }
    adapters["sql-bot"] = {
        "base": "fake-model",
        "versions": [
            {"served_name": "sql-bot@v1", "source": str(tmp_path / "sql-bot@v1"), "weight_percent": 90},
            {"served_name": "sql-bot@v2", "source": str(tmp_path / "sql-bot@v2"), "weight_percent": 10},
        ],
    }
    return {
        "models": {"fake-model": {"lora": {"max_loras": 2, "adapters_uri": ""}}},
        "aliases": {"chat": "fake-model"},
        "adapters": adapters,
    }


@contextlib.asynccontextmanager
async def fleet(
    tmp_path: Path, policy: str = "adapter_affinity", replicas: int = 2, adapter_policy: str = "", **behaviour: Any
) -> AsyncIterator[tuple[GatewayURL, list[str], Any]]:
    """``policy`` routes every request (adapter_policy "": adapters too, so a test measures the one it names)."""
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog(tmp_path)))
    configs = [
        EngineConfig(
            models=("fake-model",),
            max_loras=2,
            runtime_lora_updating=True,
            record_requests=1000,
            behaviour=Behaviour(**{"lora_load_delay": 0.02, "output_tokens": 4, **behaviour}),
        )
        for _ in range(replicas)
    ]
    async with contextlib.AsyncExitStack() as stack:
        engines = [await stack.enter_async_context(running_engine(c)) for c in configs]
        url, app = await stack.enter_async_context(
            running_gateway(
                engines,
                catalog_file=str(path),
                routing_policy=policy,
                # The traffic bound (balance over time) is off here: the tests count exact placements.
                routing={"adapter_load_factor": 1.5, "adapter_traffic_factor": 100, "adapter_policy": adapter_policy},
                hold_timeout=2,
            )
        )
        yield url, engines, app


def client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=10)


async def engine_state(engines: list[str]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        return [(await http.get(e + "/_fake/lora")).json() for e in engines]


async def served(engines: list[str]) -> list[list[str]]:
    """The models each engine was asked for, in order."""
    async with httpx.AsyncClient() as http:
        return [[r["body"]["model"] for r in (await http.get(e + "/_fake/requests")).json()] for e in engines]


async def metric(url: GatewayURL, name: str, **labels: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(url.admin + "/metrics")).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def total_loads(engines: list[str]) -> int:
    return sum(sum(s["loads"].values()) for s in await engine_state(engines))


async def test_adapter_requests_go_where_the_adapter_is_loaded(tmp_path: Path) -> None:
    async with fleet(tmp_path) as (url, engines, _):
        async with client(url) as ai:
            for _ in range(10):
                answer = await ai.completions.create(model="a1", prompt="select", max_tokens=2)
                assert answer.choices[0].text
        # One load, on one replica; every later request went there.
        states = await engine_state(engines)
        assert sorted(sum(s["loads"].values()) for s in states) == [0, 1]
        assert sorted(len(models) for models in await served(engines)) == [0, 10]
        assert await metric(url, "inferstack_adapter_routing_decisions_total", model="a1", reason="free_slot") == 1
        assert await metric(url, "inferstack_adapter_routing_decisions_total", model="a1", reason="loaded") == 9
        assert await metric(url, "inferstack_adapter_loads_total", model="fake-model", adapter="a1") == 1


@pytest.mark.parametrize("policy", ["adapter_affinity", "round_robin"])
async def test_a_skewed_mix_loads_each_adapter_once_with_affinity(tmp_path: Path, policy: str) -> None:
    # 4 adapters, 2 replicas x 2 slots: placed by affinity, every adapter fits somewhere for good.
    draw = random.Random(7)
    mix = draw.choices(ADAPTERS, weights=[8, 4, 2, 1], k=40)
    async with fleet(tmp_path, policy) as (url, engines, _), client(url) as ai:
        for model in mix:
            await ai.completions.create(model=model, prompt="x", max_tokens=1)
        loads = await total_loads(engines)
        # The gateway's count (runtime loads + predicted swaps) is the engines' count.
        assert await metric(url, "inferstack_adapter_loads_total") == loads
    if policy == "adapter_affinity":
        assert loads == len(set(mix))
    else:
        assert loads >= 3 * len(set(mix))  # round robin swaps adapters in and out (12 loads here)


async def test_a_hot_adapter_spreads_under_the_cap_and_each_replica_loads_it_once(tmp_path: Path) -> None:
    async with fleet(tmp_path, ttft=0.3) as (url, engines, _), client(url) as ai:
        await asyncio.gather(*(ai.completions.create(model="a1", prompt="x", max_tokens=1) for _ in range(12)))
        per_replica = [len(m) for m in await served(engines)]
        # Bounded loads (1.5 x mean): the replica holding a1 takes a share, then the other loads it too.
        assert min(per_replica) >= 3, per_replica
        assert [sum(s["loads"].values()) for s in await engine_state(engines)] == [1, 1]
        assert await metric(url, "inferstack_adapter_routing_decisions_total", reason="capped") >= 1
        assert await metric(url, "inferstack_adapter_replicas", adapter="a1") == 2


async def test_concurrent_requests_for_a_missing_adapter_share_one_load(tmp_path: Path) -> None:
    async with fleet(tmp_path, replicas=1, lora_load_delay=0.3) as (url, engines, _), client(url) as ai:
        await asyncio.gather(*(ai.completions.create(model="a2", prompt="x", max_tokens=1) for _ in range(8)))
        assert (await engine_state(engines))[0]["loads"] == {"a2": 1}
        assert await metric(url, "inferstack_adapter_loads_total", kind="runtime_load") == 1
        assert await metric(url, "inferstack_adapter_load_duration_seconds_count") == 1


async def test_unknown_adapter_is_404_and_no_engine_is_asked(tmp_path: Path) -> None:
    async with fleet(tmp_path) as (url, engines, _), client(url) as ai:
        for model in ("a9", "a1@v2", "sql-bot@v3"):
            with pytest.raises(openai.NotFoundError) as caught:
                await ai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
            assert caught.value.code == "model_not_found"
        assert await served(engines) == [[], []]
        assert await total_loads(engines) == 0


async def test_a_load_that_fails_everywhere_is_a_502(tmp_path: Path) -> None:
    async with fleet(tmp_path) as (url, engines, _), client(url) as ai:
        with pytest.raises(openai.APIStatusError) as caught:
            await ai.completions.create(model="broken", prompt="x", max_tokens=1)
        assert caught.value.status_code == 502
        assert "could not load adapter 'broken@v1'" in caught.value.message
        assert await served(engines) == [[], []]
        assert await metric(url, "inferstack_adapter_load_failures_total", adapter="broken@v1", reason="status") >= 1


async def test_aliases_and_rollouts_resolve_and_models_lists_adapters(tmp_path: Path) -> None:
    async with fleet(tmp_path) as (url, engines, _), client(url) as ai:
        listed = {m.id: getattr(m, "parent", None) async for m in ai.models.list()}
        assert listed["sql-bot"] == "fake-model" and listed["a1"] == "fake-model" and listed["fake-model"] is None
        await ai.completions.create(model="chat", prompt="x", max_tokens=1)
        for _ in range(30):
            await ai.completions.create(model="sql-bot", prompt="x", max_tokens=1)
        sent = [m for models in await served(engines) for m in models]
        assert sent.count("fake-model") == 1
        # A 90/10 rollout between versions the engines know; the gateway loaded them where it sent them.
        # Unseeded draws (the gateway's): P(v1 <= 15 of 30) ~ 4e-8; neither assertion needs v2 drawn.
        assert set(sent) - {"fake-model"} <= {"sql-bot@v1", "sql-bot@v2"}
        assert sent.count("sql-bot@v1") > 15
        # Versions are never listed to clients, even once loaded on an engine.
        assert not {m.id async for m in ai.models.list()} & {"sql-bot@v1", "sql-bot@v2"}


async def test_a_client_that_leaves_during_a_load_leaves_nothing_in_flight(tmp_path: Path) -> None:
    async with fleet(tmp_path, replicas=1, lora_load_delay=0.5) as (url, engines, app):
        async with httpx.AsyncClient(base_url=url, timeout=0.1) as http:
            with pytest.raises(httpx.TimeoutException):
                await http.post("/v1/completions", json={"model": "a1", "prompt": "x", "max_tokens": 1})
        async with client(url) as ai:  # waits for the same load, which went on
            await ai.completions.create(model="a1", prompt="x", max_tokens=1)
        replica = app.state.gateway.cluster.placement.replica(engines[0])
        assert replica is not None and replica.busy() == 0
        assert (await engine_state(engines))[0]["loads"] == {"a1": 1}


async def test_a_fleet_routes_models_by_its_policy_and_adapters_where_they_are_loaded(tmp_path: Path) -> None:
    # The deployed shape: INFERSTACK_ROUTING_POLICY for base models, routing.adapter_policy (its default,
    # adapter_affinity) for adapters; the override header still names one profile for both.
    async with fleet(tmp_path, policy="prefix_affinity", adapter_policy="adapter_affinity") as (url, engines, _):
        async with client(url) as ai:
            for _ in range(10):
                await ai.completions.create(model="a1", prompt="select", max_tokens=2)
            for _ in range(3):
                await ai.completions.create(model="chat", prompt="hello", max_tokens=2)
            await ai.completions.create(
                model="a1", prompt="select", max_tokens=2, extra_headers={"x-inferstack-routing-policy": "round_robin"}
            )
        assert await metric(url, "inferstack_routing_decisions_total", policy="adapter_affinity") == 10
        assert await metric(url, "inferstack_routing_decisions_total", policy="prefix_affinity") == 3
        assert await metric(url, "inferstack_routing_decisions_total", policy="round_robin") == 1
        # Placed by adapter_affinity: one load, every request on the replica that holds it.
        assert await metric(url, "inferstack_adapter_routing_decisions_total", model="a1", reason="loaded") == 9
        assert max(models.count("a1") for models in await served(engines)) >= 10
