"""Redis down is a decision, not a crash: a refused and a hung Redis, under each failure policy.

A refused Redis is a closed port; a hung one accepts connections and never answers. Either way a
request gets its policy's answer (200 when the features fail open; 503 with an OpenAI body and
Retry-After when they fail closed) within the Redis timeouts, never a 500, and ``/readyz`` and the
metrics say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from inferstack.filters import generate_key, hash_key

from ..gateway_harness import free_port
from ..test_relay_fake_engine import CHAT, metric
from ..test_tenancy_api import bearer, tenant_stack
from ..waiting import until

TIMEOUT = 0.2  # the Redis connect and command timeouts used here


@contextlib.asynccontextmanager
async def dead_redis(kind: str) -> AsyncIterator[str]:
    if kind == "refused":
        yield f"redis://127.0.0.1:{free_port()}/0"
        return
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(65536):
            pass  # reads every command, answers none

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for writer in held:
            writer.close()
        server.close()


def entries(key: str) -> list[dict[str, object]]:
    return [{"key_sha256": hash_key(key), "tenant": "acme", "rpm": 100, "tpm": 100000, "monthly_budget_usd": 100.0}]


def gateway_settings(
    redis_url: str, mode: str, timeout: float = TIMEOUT, cache_backend: str = "redis"
) -> dict[str, object]:
    policy = dict.fromkeys(("limits", "budgets", "cache", "idempotency"), mode)
    return {
        "redis_url": redis_url,
        "tenancy": {
            "cache": {"backend": cache_backend},
            "redis": {"connect_timeout": timeout, "command_timeout": timeout, "check_interval": 0.2, **policy},
        },
    }


async def model_known(client: httpx.AsyncClient, key: str) -> None:
    """Wait (bounded) for the gateway's first health check: before it, ``fake-model`` is unknown (404).
    These tests cannot wait for /readyz, which a fail-closed gateway with Redis down keeps failing."""

    async def listed() -> bool:
        cards = (await client.get("/v1/models", headers=bearer(key))).json().get("data", [])
        return any(card.get("id") == "fake-model" for card in cards)

    await until(listed, "the gateway to list fake-model", within=10)


REQUESTS = [
    ({}, CHAT),
    ({"idempotency-key": "order-1"}, {**CHAT, "temperature": 0.7}),
    ({}, {**CHAT, "temperature": 0}),  # cacheable
]


@pytest.mark.parametrize("kind", ["refused", "hung"])
async def test_fail_open_serves_every_request_and_says_redis_is_down(tmp_path: Path, kind: str) -> None:
    key = generate_key()
    async with (
        dead_redis(kind) as redis_url,
        tenant_stack(tmp_path, entries(key), **gateway_settings(redis_url, "open")) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        await model_known(client, key)
        for headers, body in REQUESTS:
            started = time.monotonic()
            resp = await client.post("/v1/chat/completions", json=body, headers={**bearer(key), **headers})
            assert resp.status_code == 200, resp.text
            # At most one timed-out call per feature on the first request; none once Redis is known down.
            # (Before: 500, after redis-py's retries, about 5 s for a hung Redis. Slack for a loaded machine.)
            assert time.monotonic() - started < 4 * TIMEOUT + 2.0
        assert (await client.get("/readyz")).status_code == 200
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_dependency_up", dependency="redis") == 0
        for feature in ("limits", "budgets", "cache", "idempotency"):
            assert metric(text, "inferstack_dependency_errors_total", dependency="redis", feature=feature) >= 1, feature


@pytest.mark.parametrize("kind", ["refused", "hung"])
async def test_fail_closed_answers_503_with_an_openai_body_and_fails_readiness(tmp_path: Path, kind: str) -> None:
    key = generate_key()
    async with (
        dead_redis(kind) as redis_url,
        tenant_stack(tmp_path, entries(key), wait_ready=False, **gateway_settings(redis_url, "closed")) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        await model_known(client, key)
        for headers, body in REQUESTS:
            started = time.monotonic()
            resp = await client.post("/v1/chat/completions", json=body, headers={**bearer(key), **headers})
            assert time.monotonic() - started < 4 * TIMEOUT + 2.0
            assert resp.status_code == 503, resp.text
            error = resp.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["code"] == "dependency_unavailable"
            assert int(resp.headers["retry-after"]) >= 1
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["refusing"] == ["limits", "budgets", "cache", "idempotency"]


async def test_readiness_names_only_features_whose_state_is_on_redis(tmp_path: Path) -> None:
    """An in-memory cache keeps answering while Redis is down: /readyz must not say it refuses."""
    key = generate_key()
    async with (
        dead_redis("refused") as redis_url,
        tenant_stack(
            tmp_path, entries(key), wait_ready=False, **gateway_settings(redis_url, "closed", cache_backend="memory")
        ) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        await model_known(client, key)
        resp = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert resp.status_code == 503, resp.text
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["refusing"] == ["limits", "budgets", "idempotency"]


async def test_readiness_and_service_come_back_with_redis(tmp_path: Path, redis_url: str) -> None:
    """Closed policy against a real redis-server that is up: served, ready, and the gauge says up."""
    key = generate_key()
    async with (
        # Generous timeouts: a loaded machine must not make a live Redis look down here.
        tenant_stack(tmp_path, entries(key), **gateway_settings(redis_url, "closed", timeout=2.0)) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        for headers, body in REQUESTS:
            resp = await client.post("/v1/chat/completions", json=body, headers={**bearer(key), **headers})
            assert resp.status_code == 200, resp.text
        assert (await client.get("/readyz")).status_code == 200
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_dependency_up", dependency="redis") == 1
        assert metric(text, "inferstack_dependency_errors_total") == 0
