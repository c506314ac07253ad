"""Tenancy through a running gateway: keys, limits with headers, cache, idempotency, budgets, admin."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from inferstack.filters import generate_key, hash_key
from inferstack_fake_engine import Behaviour, EngineConfig, running_engine

from .gateway_harness import GatewayURL, running_gateway
from .test_relay_fake_engine import CHAT, metric, recorded


def key_file(path: Path, entries: list[dict[str, Any]]) -> Path:
    lines = ["keys:"]
    for entry in entries:
        lines.append(f"  - key_sha256: {entry['key_sha256']}")
        for name, value in entry.items():
            if name != "key_sha256":
                lines.append(f"    {name}: {value!r}" if isinstance(value, str) else f"    {name}: {value}")
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.asynccontextmanager
async def tenant_stack(
    tmp_path: Path, entries: list[dict[str, Any]], **gateway: Any
) -> AsyncIterator[tuple[GatewayURL, str]]:
    keys = key_file(tmp_path / "keys.yaml", entries)
    async with (
        running_engine(EngineConfig(behaviour=Behaviour(output_tokens=8))) as engine,
        running_gateway([engine], auth_enabled=True, keys_file=str(keys), **gateway) as (url, _),
    ):
        yield url, engine


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_keys_are_required_checked_and_never_echoed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good, other = generate_key(), generate_key()
    entries = [
        {"key_sha256": hash_key(good), "tenant": "acme", "models": ["fake-model"]},
        {"key_sha256": hash_key(other), "tenant": "zeta", "models": ["another-model"]},
    ]
    caplog.set_level(logging.INFO)
    async with tenant_stack(tmp_path, entries) as (url, _), httpx.AsyncClient(base_url=url) as client:
        missing = await client.post("/v1/chat/completions", json=CHAT)
        assert missing.status_code == 401
        assert missing.json()["error"]["type"] == "authentication_error"
        wrong = await client.post("/v1/chat/completions", json=CHAT, headers=bearer("isk-not-a-key"))
        assert wrong.status_code == 401
        assert "isk-not-a-key" not in wrong.text
        forbidden = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(other))
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["code"] == "model_not_allowed"
        ok = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(good))
        assert ok.status_code == 200
        # Unauthenticated callers learn nothing about which models exist.
        probe = await client.post("/v1/chat/completions", json={**CHAT, "model": "secret"})
        assert probe.status_code == 401
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_completion_tokens_total", tenant="acme") == 8
    assert good not in caplog.text and other not in caplog.text
    assert "isk-not-a-key" not in caplog.text


async def test_rate_limits_answer_429_with_retry_after_and_openai_headers(tmp_path: Path) -> None:
    key = generate_key()
    entries = [{"key_sha256": hash_key(key), "tenant": "acme", "rpm": 2, "tpm": 100000}]
    async with tenant_stack(tmp_path, entries) as (url, _), httpx.AsyncClient(base_url=url) as client:
        first = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        assert "x-ratelimit-limit-tokens" in first.headers and "x-ratelimit-reset-requests" in first.headers
        await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        third = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert third.status_code == 429
        assert int(third.headers["retry-after"]) >= 1
        assert third.json()["error"]["code"] == "rate_limit_exceeded"
        assert third.headers["x-ratelimit-remaining-requests"] == "0"
        assert third.headers["x-ratelimit-limit-tokens"] == "100000"
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_rate_limited_total", tenant="acme", limit="rpm") == 1


async def test_deterministic_requests_are_answered_from_the_cache_as_json_and_as_sse(tmp_path: Path) -> None:
    key = generate_key()
    async with (
        tenant_stack(tmp_path, [{"key_sha256": hash_key(key), "tenant": "acme"}]) as (url, engine),
        httpx.AsyncClient(base_url=url) as client,
    ):
        body = {**CHAT, "temperature": 0}
        miss = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        hit = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        assert (miss.headers["x-inferstack-cache"], hit.headers["x-inferstack-cache"]) == ("miss", "hit")
        assert hit.json() == miss.json()
        streamed = await client.post("/v1/chat/completions", json={**body, "stream": True}, headers=bearer(key))
        assert streamed.headers["x-inferstack-cache"] == "hit"
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert streamed.content.endswith(b"data: [DONE]\n\n")
        text = "".join(
            orjson.loads(line[6:])["choices"][0]["delta"].get("content", "")
            for line in streamed.text.splitlines()
            if line.startswith('data: {"') and '"choices":[{' in line
        )
        assert text == miss.json()["choices"][0]["message"]["content"]
        no_store = await client.post(
            "/v1/chat/completions", json=body, headers={**bearer(key), "cache-control": "no-cache"}
        )
        assert no_store.headers["x-inferstack-cache"] != "hit"
        assert len([r for r in await recorded(client, engine) if r["path"].startswith("/v1/")]) == 2
        metrics = (await client.get(url.admin + "/metrics")).text
        assert metric(metrics, "inferstack_cache_requests_total", result="hit") == 2


async def test_idempotency_key_replays_and_rejects_a_different_body(tmp_path: Path) -> None:
    key = generate_key()
    async with (
        tenant_stack(tmp_path, [{"key_sha256": hash_key(key), "tenant": "acme"}]) as (url, engine),
        httpx.AsyncClient(base_url=url) as client,
    ):
        headers = {**bearer(key), "idempotency-key": "order-42"}
        first = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
        again = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
        assert again.status_code == 200 and again.json() == first.json()
        other = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 3}, headers=headers)
        assert other.status_code == 422
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        assert len([r for r in await recorded(client, engine) if r["path"].startswith("/v1/")]) == 1


async def test_budgets_stop_a_tenant_and_the_admin_sees_the_spend(tmp_path: Path) -> None:
    key, admin = generate_key(), generate_key()
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  fake-model:\n    prompt_per_1m: 1000000\n    completion_per_1m: 1000000\n")
    entries = [{"key_sha256": hash_key(key), "tenant": "acme", "monthly_budget_usd": 10.0}]
    async with (
        tenant_stack(tmp_path, entries, prices_file=str(prices), admin_key=hash_key(admin)) as (url, _),
        httpx.AsyncClient(base_url=url) as client,
    ):
        # 1 USD per token: at most 7 (prompt, estimated) + 2 USD, which the budget holds; the
        # engine's usage settles it.
        first = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 2}, headers=bearer(key))
        assert first.status_code == 200
        over = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 2}, headers=bearer(key))
        assert over.status_code == 429
        assert over.json()["error"]["code"] == "insufficient_quota"
        assert (await client.get("/admin/usage", headers=bearer(admin))).status_code == 404  # not on the public port
        denied = await client.get(url.admin + "/admin/usage", headers=bearer(key))
        assert denied.status_code == 401
        report = await client.get(url.admin + "/admin/usage", headers=bearer(admin))
        assert report.status_code == 200
        assert "acme" in report.text
        bad = await client.get(url.admin + "/admin/usage?start=yesterday", headers=bearer(admin))
        assert bad.status_code == 400
        metrics = (await client.get(url.admin + "/metrics")).text
        assert metric(metrics, "inferstack_cost_usd_total", tenant="acme") > 2
        assert metric(metrics, "inferstack_rate_limited_total", tenant="acme", limit="budget") == 1


async def test_a_usage_range_past_any_clock_is_a_400_not_a_500(tmp_path: Path) -> None:
    """``float()`` takes ``inf``, ``nan`` and ``1e20``: the month's start of such an end overflowed (500,
    before the admin key was even checked), and an infinite range could not be written as JSON."""
    key, admin = generate_key(), generate_key()
    entries = [{"key_sha256": hash_key(key), "tenant": "acme"}]
    async with (
        tenant_stack(tmp_path, entries, admin_key=hash_key(admin)) as (url, _),
        httpx.AsyncClient(base_url=url.admin) as client,
    ):
        for query in ("end=1e20", "end=inf", "end=-1e20", "start=nan", "start=-inf&end=inf", "start=0&end=1e300"):
            for headers in (bearer(admin), {}):
                resp = await client.get(f"/admin/usage?{query}", headers=headers)
                assert resp.status_code == 400, (query, resp.status_code, resp.text)
                assert resp.json()["error"]["param"] in ("start", "end"), query
        ok = await client.get(f"/admin/usage?start={int(time.time()) - 86_400}", headers=bearer(admin))
        assert ok.status_code == 200, ok.text
