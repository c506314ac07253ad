"""Routing policies inside the gateway: decisions, the override header, engine load signals."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path

import httpx
import pytest

from inferstack.filters import generate_key, hash_key
from inferstack_fake_engine import Behaviour

from .test_relay_fake_engine import CHAT, configure, fleet, metric, recorded
from .test_tenancy_api import bearer, tenant_stack


async def served_by(client: httpx.AsyncClient, engines: list[str]) -> Counter[int]:
    counts: Counter[int] = Counter()
    for i, engine in enumerate(engines):
        counts[i] = len([r for r in await recorded(client, engine) if r["path"].startswith("/v1/")])
    return counts


async def test_round_robin_spreads_and_counts_its_decisions(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="inferstack.access")
    async with (
        fleet(Behaviour(), Behaviour(), routing_policy="round_robin") as (url, engines, _),
        httpx.AsyncClient() as client,
    ):
        for _ in range(6):
            assert (await client.post(url + "/v1/chat/completions", json=CHAT)).status_code == 200
        assert await served_by(client, engines) == Counter({0: 3, 1: 3})
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_routing_decisions_total", policy="round_robin", reason="round_robin") == 6
        # Each access-log line says which policy chose the replica, and why.
        lines = [r for r in caplog.records if r.name == "inferstack.access"]
        assert [(r.access["policy"], r.access["reason"]) for r in lines] == [("round_robin", "round_robin")] * 6


async def test_prefix_affinity_keeps_a_shared_prefix_on_one_replica(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="inferstack.access")
    system = "You are a meticulous assistant for the accounts team. " * 40  # ~2 KB of shared prefix
    async with fleet(Behaviour(), Behaviour(), Behaviour()) as (url, engines, _), httpx.AsyncClient() as client:
        for turn in range(6):
            body = {
                "model": "fake-model",
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": f"question {turn}"}],
            }
            assert (await client.post(url + "/v1/chat/completions", json=body)).status_code == 200
        counts = await served_by(client, engines)
        assert sorted(counts.values()) == [0, 0, 6]
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_routing_decisions_total", policy="prefix_affinity", reason="prefix_hit") == 5
        # The log line says how much of the prompt the chosen replica was believed to hold.
        blocks = [r.access["prefix_blocks"] for r in caplog.records if r.name == "inferstack.access"]
        assert blocks[0] == 0 and all(b >= len(system) // 256 for b in blocks[1:]), blocks


async def test_the_override_header_picks_a_policy_and_rejects_unknown_ones() -> None:
    async with fleet(Behaviour(), Behaviour()) as (url, _, _app), httpx.AsyncClient() as client:
        resp = await client.post(
            url + "/v1/chat/completions", json=CHAT, headers={"x-inferstack-routing-policy": "least_load"}
        )
        assert resp.status_code == 200
        resp = await client.post(
            url + "/v1/chat/completions", json=CHAT, headers={"x-inferstack-routing-policy": "random"}
        )
        assert resp.status_code == 400
        assert "x-inferstack-routing-policy" in resp.json()["error"]["message"]
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_routing_decisions_total", policy="least_load") == 1


async def test_with_overrides_off_the_header_is_a_403_that_reaches_no_engine() -> None:
    async with (
        fleet(Behaviour(), routing={"allow_override": False}) as (url, engines, _app),
        httpx.AsyncClient() as client,
    ):
        headers = {"x-inferstack-routing-policy": "round_robin"}
        resp = await client.post(url + "/v1/chat/completions", json=CHAT, headers=headers)
        assert resp.status_code == 403
        error = resp.json()["error"]
        assert (error["type"], error["code"]) == ("permission_error", "routing_override_disabled")
        assert await served_by(client, engines) == Counter()
        assert (await client.post(url + "/v1/chat/completions", json=CHAT)).status_code == 200
        assert await served_by(client, engines) == Counter({0: 1})


async def test_with_overrides_off_only_a_key_with_the_grant_chooses_its_profile(tmp_path: Path) -> None:
    plain, operator = generate_key(), generate_key()
    entries = [
        {"key_sha256": hash_key(plain), "tenant": "acme"},
        {"key_sha256": hash_key(operator), "tenant": "ops", "routing_override": True},
    ]
    chosen = {"x-inferstack-routing-policy": "round_robin"}
    async with (
        tenant_stack(tmp_path, entries, routing={"allow_override": False}) as (url, engine),
        httpx.AsyncClient(base_url=url) as client,
    ):
        refused = await client.post("/v1/chat/completions", json=CHAT, headers={**bearer(plain), **chosen})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "routing_override_disabled"
        assert await served_by(client, [engine]) == Counter()
        granted = await client.post("/v1/chat/completions", json=CHAT, headers={**bearer(operator), **chosen})
        assert granted.status_code == 200
        assert (await client.post("/v1/chat/completions", json=CHAT, headers=bearer(plain))).status_code == 200
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_routing_decisions_total", policy="round_robin") == 1
        assert metric(text, "inferstack_routing_decisions_total", policy="prefix_affinity") == 1


async def test_least_load_avoids_a_replica_whose_engine_reports_a_queue() -> None:
    async with (
        fleet(
            Behaviour(), Behaviour(), routing_policy="least_load", routing={"scrape_interval": 0.05, "load_max_age": 5}
        ) as (url, engines, app),
        httpx.AsyncClient() as client,
    ):
        await configure(client, engines[0], report_waiting=50)
        pool = app.state.gateway.cluster
        async with asyncio.timeout(5):  # until the gateway has scraped the queue
            while pool.endpoints[engines[0]].load is None or pool.endpoints[engines[0]].load.waiting != 50:
                await asyncio.sleep(0.02)
        for _ in range(4):
            assert (await client.post(url + "/v1/chat/completions", json=CHAT)).status_code == 200
        assert await served_by(client, engines) == Counter({0: 0, 1: 4})


async def test_session_policy_sticks_by_header_or_user() -> None:
    async with (
        fleet(Behaviour(), Behaviour(), Behaviour(), routing_policy="session") as (url, engines, _),
        httpx.AsyncClient() as client,
    ):
        for _ in range(4):
            await client.post(url + "/v1/chat/completions", json=CHAT, headers={"x-session-id": "alice"})
        assert sorted((await served_by(client, engines)).values()) == [0, 0, 4]
        for _ in range(3):
            await client.post(url + "/v1/chat/completions", json={**CHAT, "user": "bob"})
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_routing_decisions_total", policy="session") == 7


async def test_dns_discovery_finds_replicas_through_the_resolver() -> None:
    from inferstack_fake_engine import EngineConfig, running_engine

    from .gateway_harness import running_gateway

    async with running_engine(EngineConfig()) as engine:
        port = int(engine.rsplit(":", 1)[1])
        async with (
            running_gateway([], discovery="dns", dns_name="localhost", dns_port=port, dns_interval=0.2) as (url, _),
            httpx.AsyncClient() as client,
        ):
            resp = await client.post(url + "/v1/chat/completions", json=CHAT)
            assert resp.status_code == 200
            assert [m["id"] for m in (await client.get(url + "/v1/models")).json()["data"]] == ["fake-model"]


async def test_a_kv_cache_profile_avoids_a_replica_whose_engine_reports_a_full_cache() -> None:
    profiles = {"kv": {"scorers": {"kv_cache": 1}}}
    async with (
        fleet(
            Behaviour(),
            Behaviour(),
            routing_policy="kv",
            routing={"scrape_interval": 0.05, "load_max_age": 5, "profiles": profiles},
        ) as (url, engines, app),
        httpx.AsyncClient() as client,
    ):
        await configure(client, engines[0], report_kv_cache_usage=0.9)
        await configure(client, engines[1], report_kv_cache_usage=0.2)
        pool = app.state.gateway.cluster
        async with asyncio.timeout(5):  # until the gateway has scraped both as configured
            while [(e.load and e.load.kv_cache_usage) for e in map(pool.endpoints.get, engines)] != [0.9, 0.2]:
                await asyncio.sleep(0.02)
        for _ in range(4):
            assert (await client.post(url + "/v1/chat/completions", json=CHAT)).status_code == 200
        assert await served_by(client, engines) == Counter({0: 0, 1: 4})
