"""Exactness through a running gateway, in memory and on Redis: a request that never reached an
engine gives back its TPM reservation; an unknown model is refused before it is recorded anywhere."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferstack.filters import generate_key, hash_key

from ..test_errors_api import assert_openai_error
from ..test_relay_fake_engine import CHAT
from ..test_tenancy_api import bearer, tenant_stack

TPM = 2000
RESERVED = 7 + 512  # CHAT: 4 tokens of template + "Hello there" (11 bytes / 4), and the default max_tokens


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest, redis_url: str) -> dict[str, Any]:
    return {"redis_url": redis_url} if request.param == "redis" else {}


async def test_requests_that_never_reached_an_engine_give_their_tokens_back(
    tmp_path: Path, backend: dict[str, Any], redis_client: Any
) -> None:
    key = generate_key()
    entries = [{"key_sha256": hash_key(key), "tenant": "acme", "tpm": TPM}]
    # "cold" is declared but has no replica: its requests wait out the hold, then 503.
    async with (
        tenant_stack(tmp_path, entries, models=["cold"], hold_timeout=0.2, **backend) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        bad_override = await client.post(
            "/v1/chat/completions", json=CHAT, headers={**bearer(key), "x-inferstack-routing-policy": "nope"}
        )
        assert_openai_error(bad_override, 400)
        held_out = await client.post("/v1/chat/completions", json={**CHAT, "model": "cold"}, headers=bearer(key))
        assert_openai_error(held_out, 503)
        served = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert served.status_code == 200
        # Only this request's reservation is missing (the bucket refills, but never above TPM).
        assert int(served.headers["x-ratelimit-remaining-tokens"]) == TPM - RESERVED


async def test_an_unknown_model_is_404_before_it_is_recorded_anywhere(
    tmp_path: Path, backend: dict[str, Any], redis_client: Any
) -> None:
    key, admin = generate_key(), generate_key()
    entries = [{"key_sha256": hash_key(key), "tenant": "acme", "tpm": TPM, "monthly_budget_usd": 100.0}]
    async with (
        tenant_stack(tmp_path, entries, admin_key=hash_key(admin), **backend) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        for model in ("no-such-model", "x" * 5000):
            resp = await client.post("/v1/chat/completions", json={**CHAT, "model": model}, headers=bearer(key))
            assert resp.status_code in (400, 404)
            assert_openai_error(resp, resp.status_code, param="model")
        served = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert int(served.headers["x-ratelimit-remaining-tokens"]) == TPM - RESERVED
        report = (
            await client.get(
                url.admin + "/admin/usage",
                params={"start": time.time() - 3600, "end": time.time() + 10},
                headers=bearer(admin),
            )
        ).json()
        assert {row["model"] for row in report["data"]} == {"fake-model"}
        if backend:
            keys = [k.decode() for k in await redis_client.keys("*")]
            assert not [k for k in keys if "no-such-model" in k or "xxxxx" in k]
            usage = await redis_client.hgetall(next(k for k in keys if ":usage:" in k))
            assert all(b"no-such-model" not in f and b"xxxxx" not in f for f in usage)
