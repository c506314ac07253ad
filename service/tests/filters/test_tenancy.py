"""The filters as the gateway calls them: ``Tenancy.admit`` / ``finish``, in memory and on Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry

from inferstack.errors import (
    AuthenticationError,
    ConflictError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
)
from inferstack.filters import Tenancy, TenancySettings, generate_key, hash_key, open_tenancy

from ..waiting import until

MODEL = "tiny"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "temperature": 0, "max_tokens": 10}
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi!"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
)
USAGE = {"prompt_tokens": 5, "completion_tokens": 2}


class Env:
    def __init__(self, tmp: Path, redis_url: str) -> None:
        self.tmp, self.redis_url = tmp, redis_url
        self.keys: dict[str, str] = {}
        self.admin = generate_key()
        self.keys_path = tmp / "keys.yaml"
        self.prices_path = tmp / "prices.yaml"
        # 1 USD per 1M prompt tokens, 1000 USD per 1M completion tokens: budgets run out fast.
        self.prices_path.write_text(f"models: {{{MODEL}: {{prompt_per_1m: 1, completion_per_1m: 1000}}}}")

    def write_keys(self, **tenants: dict[str, Any]) -> None:
        entries = []
        for tenant, limits in tenants.items():
            self.keys.setdefault(tenant, generate_key())
            entries.append({"key_sha256": hash_key(self.keys[tenant]), "tenant": tenant, **limits})
        self.keys_path.write_text(yaml.safe_dump({"keys": entries}))

    def auth(self, tenant: str, **extra: str) -> list[tuple[bytes, bytes]]:
        headers = [(b"authorization", f"Bearer {self.keys[tenant]}".encode())]
        return headers + [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]

    def open(
        self, backend: str, registry: CollectorRegistry | None = None, **options: Any
    ) -> AbstractAsyncContextManager[Tenancy]:
        settings = TenancySettings.model_validate({"reload_interval": 0.05, **options})
        return open_tenancy(
            settings,
            registry=registry or CollectorRegistry(),
            keys_file=str(self.keys_path),
            admin_key_sha256=hash_key(self.admin),
            prices_file=str(self.prices_path),
            redis_url=self.redis_url if backend == "redis" else "",
        )


@pytest.fixture(params=["memory", "redis"])
async def env(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, redis_client: Any
) -> AsyncIterator[tuple[Env, str]]:
    yield Env(tmp_path, redis_url), request.param


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_auth_limits_headers_and_metrics(env: tuple[Env, str]) -> None:
    e, backend = env
    e.write_keys(acme={"rpm": 2, "tpm": 1000, "models": [MODEL]})
    registry = CollectorRegistry()
    async with e.open(backend, registry) as t:
        with pytest.raises(AuthenticationError):
            await t.admit("chat", CHAT, b"", [], "r1")
        with pytest.raises(PermissionDeniedError):
            await t.admit("chat", {**CHAT, "model": "other"}, b"", e.auth("acme"), "r1")
        adm = await t.admit("chat", CHAT, b"", e.auth("acme", x_inferstack_cache="off"), "r1")
        headers = dict(adm.headers)
        assert headers[b"x-ratelimit-limit-requests"] == b"2"
        assert headers[b"x-ratelimit-remaining-tokens"] == str(1000 - (4 + 2 + 10)).encode()
        assert headers[b"x-inferstack-cache"] == b"bypass"
        await t.finish(adm, status=200, usage=USAGE, response=ANSWER)
        await t.finish(await t.admit("chat", CHAT, b"", e.auth("acme"), "r1"), status=200, usage=USAGE)
        with pytest.raises(RateLimitError) as limited:
            await t.admit("chat", CHAT, b"", e.auth("acme"), "r1")
        assert limited.value.headers["Retry-After"].isdigit()
    assert sample(registry, "inferstack_rate_limited_total", tenant="acme", limit="rpm") == 1
    assert sample(registry, "inferstack_cost_usd_total", tenant="acme", model=MODEL) == pytest.approx(
        2 * (5 / 1e6 + 2 * 1000 / 1e6)
    )


async def test_every_way_a_request_ends_frees_its_concurrency_slot(env: tuple[Env, str]) -> None:
    e, backend = env
    e.write_keys(acme={"max_concurrency": 1})
    async with e.open(backend) as t:
        for ending in (
            {"status": 200, "usage": USAGE},
            {"status": 499},
            {"status": 503, "reached_upstream": False},
            {"status": 502, "usage": None},
        ):
            adm = await t.admit("chat", CHAT, b"", e.auth("acme"), "r1")
            with pytest.raises(RateLimitError):
                await t.admit("chat", CHAT, b"", e.auth("acme"), "r1")
            await t.finish(adm, **ending)  # type: ignore[arg-type]
            await t.finish(adm, **ending)  # type: ignore[arg-type]  # twice: still one release
        # A request cancelled inside admit (after the limits, at the idempotency step) holds nothing either.
        with pytest.raises(ConflictError):
            first = await t.admit("chat", CHAT, b"a", e.auth("acme", idempotency_key="k"), "r1")
            await t.finish(first, status=200, response=ANSWER, usage=USAGE)
            await t.admit("chat", CHAT, b"b", e.auth("acme", idempotency_key="k"), "r1")
        await t.finish(await t.admit("chat", CHAT, b"", e.auth("acme"), "r1"), status=200)


async def test_budget_429_insufficient_quota_and_it_survives_a_restart_on_redis(env: tuple[Env, str]) -> None:
    e, backend = env
    e.write_keys(acme={"monthly_budget_usd": 0.003})
    registry = CollectorRegistry()
    async with e.open(backend, registry) as t:
        # At most 0.002006 USD (6 prompt tokens estimated, 2 completion): it fits the budget's hold.
        adm = await t.admit("chat", {**CHAT, "max_tokens": 2}, b"", e.auth("acme"), "r1")
        await t.finish(adm, status=200, usage={"prompt_tokens": 5, "completion_tokens": 4})  # 0.004005 USD
        assert sample(registry, "inferstack_tenant_budget_used_ratio", tenant="acme") == pytest.approx(1.335)
        with pytest.raises(QuotaExceededError) as over:
            await t.admit("chat", CHAT, b"", e.auth("acme"), "r1")
        assert over.value.status == 429 and over.value.to_body()["error"]["code"] == "insufficient_quota"
        assert 0 < over.value.retry_after <= 31 * 86400
        report = await t.usage_report(f"Bearer {e.admin}", time.time() - 3600, time.time() + 1)
        assert report["data"][0]["tenant"] == "acme" and report["data"][0]["completion_tokens"] == 4
        assert report["tenants"]["acme"]["month_spend_usd"] == pytest.approx(0.004005)
        with pytest.raises(AuthenticationError):
            await t.usage_report(f"Bearer {e.keys['acme']}", 0, 1)
    async with e.open(backend) as restarted:
        if backend == "redis":
            with pytest.raises(QuotaExceededError):
                await restarted.admit("chat", CHAT, b"", e.auth("acme"), "r1")
        else:  # in memory, a restart forgets: that is why several replicas need Redis
            await restarted.admit("chat", {**CHAT, "max_tokens": 2}, b"", e.auth("acme"), "r1")


async def test_cache_hit_after_a_miss_including_streams(env: tuple[Env, str]) -> None:
    e, backend = env
    e.write_keys(acme={"tpm": 1000})
    registry = CollectorRegistry()
    async with e.open(backend, registry, cache={"backend": backend}) as t:
        miss = await t.admit("chat", CHAT, b"", e.auth("acme"), "r1")
        assert miss.cached is None and dict(miss.headers)[b"x-inferstack-cache"] == b"miss"
        await t.finish(miss, status=200, usage=USAGE, response=ANSWER)
        hit = await t.admit("chat", {**CHAT, "stream": True}, b"", e.auth("acme"), "r1")
        assert hit.cached == ANSWER and dict(hit.headers)[b"x-inferstack-cache"] == b"hit"
        text = "".join(
            orjson.loads(ev[6:])["choices"][0]["delta"].get("content", "")
            for ev in hit.replay_events(include_usage=False)[:-1]
        )
        assert text == "hi!"
        await t.finish(hit, status=200, reached_upstream=False)
        # A hit generated nothing: its tokens go back to the TPM bucket.
        again = await t.admit("chat", {**CHAT, "max_tokens": 1}, b"", e.auth("acme"), "r1")
        remaining = int(dict(again.headers)[b"x-ratelimit-remaining-tokens"])
        assert remaining >= 1000 - 7 - 7
        # A new model revision never sees the old entries.
        assert (await t.admit("chat", CHAT, b"", e.auth("acme"), "r2")).cached is None
    assert sample(registry, "inferstack_cache_requests_total", result="hit") == 1
    assert sample(registry, "inferstack_cache_requests_total", result="miss") == 3
    if backend == "memory":
        assert sample(registry, "inferstack_cache_bytes") == len(ANSWER)


async def test_a_streamed_miss_fills_the_cache(env: tuple[Env, str]) -> None:
    e, backend = env
    e.write_keys(acme={})
    async with e.open(backend, cache={"backend": backend}) as t:
        adm = await t.admit("chat", {**CHAT, "stream": True}, b"", e.auth("acme"), "r1")
        assert adm.assembler is not None
        for event in StreamEvents.hi():
            adm.assembler.feed(event)
        await t.finish(adm, status=200, usage=USAGE)
        hit = await t.admit("chat", CHAT, b"", e.auth("acme"), "r1")
        assert hit.cached is not None
        assert orjson.loads(hit.cached)["choices"][0]["message"]["content"] == "hi!"


class StreamEvents:
    @staticmethod
    def hi() -> list[bytes]:
        head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
        chunks = [
            {
                **head,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi!"}, "finish_reason": "stop"}],
            },
            {**head, "choices": [], "usage": {**USAGE, "total_tokens": 7}},
        ]
        return [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


async def test_idempotency_key_replays_and_rejects_another_body(env: tuple[Env, str]) -> None:
    e, backend = env
    e.write_keys(acme={})
    hot = {**CHAT, "temperature": 1.0}  # not cacheable: only the Idempotency-Key can answer the retry
    async with e.open(backend) as t:
        failed = await t.admit("chat", hot, b"body", e.auth("acme", idempotency_key="op-1"), "r1")
        await t.finish(failed, status=502)  # the first try failed: the retry must generate
        first = await t.admit("chat", hot, b"body", e.auth("acme", idempotency_key="op-1"), "r1")
        assert first.cached is None and first.claim is not None
        retry_task = asyncio.create_task(t.admit("chat", hot, b"body", e.auth("acme", idempotency_key="op-1"), "r1"))
        await asyncio.sleep(0)
        assert not retry_task.done()  # waits for the first one to finish
        await t.finish(first, status=200, usage=USAGE, response=ANSWER)
        retry = await asyncio.wait_for(retry_task, 5)
        assert retry.cached == ANSWER and (b"x-inferstack-idempotent-replay", b"true") in retry.headers
        with pytest.raises(ConflictError) as conflict:
            await t.admit("chat", hot, b"other body", e.auth("acme", idempotency_key="op-1"), "r1")
        assert conflict.value.status == 422


async def test_one_tenant_cannot_evict_another_tenants_idempotency_records(tmp_path: Path) -> None:
    e = Env(tmp_path, "")
    e.write_keys(acme={}, zeta={})
    hot = {**CHAT, "temperature": 1.0}
    async with e.open("memory", cache={"idempotency_max_bytes_per_tenant": 4096}) as t:
        kept = await t.admit("chat", hot, b"zeta's", e.auth("zeta", idempotency_key="z-1"), "r1")
        await t.finish(kept, status=200, usage=USAGE, response=ANSWER)
        for i in range(100):  # acme writes 100 x ~400 bytes: ten times its own bound
            adm = await t.admit("chat", hot, b"acme's", e.auth("acme", idempotency_key=f"a-{i}"), "r1")
            await t.finish(adm, status=200, usage=USAGE, response=ANSWER)
        retry = await t.admit("chat", hot, b"zeta's", e.auth("zeta", idempotency_key="z-1"), "r1")
        assert retry.cached == ANSWER
        # acme's own oldest record made room for its newest: its store stayed bounded.
        oldest = await t.admit("chat", hot, b"acme's", e.auth("acme", idempotency_key="a-0"), "r1")
        assert oldest.cached is None
        newest = await t.admit("chat", hot, b"acme's", e.auth("acme", idempotency_key="a-99"), "r1")
        assert newest.cached == ANSWER


async def test_concurrent_requests_cannot_overshoot_a_budget(env: tuple[Env, str]) -> None:
    e, backend = env
    # Each request may cost 0.010006 USD (6 prompt tokens estimated, max_tokens 10): 4 fit in 0.05.
    e.write_keys(acme={"monthly_budget_usd": 0.05})
    hot = {**CHAT, "temperature": 1.0}  # not cacheable: every request is a new one

    async def admit_many(n: int) -> list[Any]:
        results = await asyncio.gather(
            *(t.admit("chat", hot, b"", e.auth("acme"), "r1") for _ in range(n)), return_exceptions=True
        )
        assert all(not isinstance(r, BaseException) or isinstance(r, QuotaExceededError) for r in results), results
        return [r for r in results if not isinstance(r, BaseException)]

    async with e.open(backend) as t:
        admitted = await admit_many(10)
        assert len(admitted) == 4
        for adm in admitted:  # each used half its maximum: settled to 0.005005 USD
            await t.finish(adm, status=200, usage={"prompt_tokens": 5, "completion_tokens": 5})
        # Spent 0.02002; the holds are gone: room for two more maxima (0.040032), not three.
        again = await admit_many(5)
        assert len(again) == 2
        for adm in again:  # never reached an engine: nothing spent, the holds are dropped
            await t.finish(adm, status=503, reached_upstream=False)
        report = await t.usage_report(f"Bearer {e.admin}", time.time() - 3600, time.time() + 1)
        assert report["tenants"]["acme"]["month_spend_usd"] == pytest.approx(0.02002)
        assert len(await admit_many(5)) == 2


async def test_keys_reload_without_restart(env: tuple[Env, str]) -> None:
    e, backend = env
    e.write_keys(acme={})
    async with e.open(backend) as t:
        e.write_keys(acme={}, newcomer={})
        await until(lambda: "newcomer" in t.ring.tenants, "the new key to load")
        adm = await t.admit("chat", CHAT, b"", e.auth("newcomer"), "r1")
        assert adm.principal.tenant == "newcomer"


async def test_tenant_labels_are_bounded(tmp_path: Path, redis_url: str) -> None:
    e = Env(tmp_path, redis_url)
    e.write_keys(a={"rpm": 1}, b={"rpm": 1})
    registry = CollectorRegistry()
    async with e.open("memory", registry, max_tenant_labels=1) as t:
        assert t.metrics.tenant_label("a") == "a" and t.metrics.tenant_label("b") == "other"
        for tenant in ("a", "b"):
            await t.admit("chat", CHAT, b"", e.auth(tenant), "r1")
            with pytest.raises(RateLimitError):
                await t.admit("chat", CHAT, b"", e.auth(tenant), "r1")
    assert sample(registry, "inferstack_rate_limited_total", tenant="other", limit="rpm") == 1
    assert registry.get_sample_value("inferstack_rate_limited_total", {"tenant": "b", "limit": "rpm"}) is None


async def test_auth_off_is_anonymous_and_unlimited(tmp_path: Path) -> None:
    async with open_tenancy(TenancySettings(), registry=CollectorRegistry(), auth_enabled=False) as t:
        adm = await t.admit("chat", CHAT, b"", [], "r1")
        assert adm.principal.tenant == "anonymous" and adm.tenant_label == "anonymous" and adm.reservation is None
    with pytest.raises(ValueError, match="keys file"):
        async with open_tenancy(TenancySettings(), registry=CollectorRegistry(), auth_enabled=True):
            pass


async def test_no_key_ever_reaches_a_log_line_or_metric(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    e = Env(tmp_path, redis_url)
    e.write_keys(acme={"rpm": 1})
    registry = CollectorRegistry()
    wrong = generate_key()
    caplog.set_level(logging.DEBUG)
    async with e.open("memory", registry) as t:
        for headers in ([(b"authorization", f"Bearer {wrong}".encode())], e.auth("acme"), e.auth("acme")):
            try:
                adm = await t.admit("chat", CHAT, b"", headers, "r1")
                await t.finish(adm, status=200, usage=USAGE)
            except (AuthenticationError, RateLimitError) as err:
                assert e.keys["acme"] not in str(err.to_body()) and wrong not in str(err.to_body())
        e.keys_path.write_text(f"keys:\n  - key_sha256: {e.keys['acme']}\n    tenant: acme\n")  # a bad edit
        await until(lambda: t.keys is not None and t.keys.errors > 0, "the bad key file to count as an error")
    from prometheus_client import generate_latest

    exposition = generate_latest(registry).decode()
    for secret in (e.keys["acme"], wrong):
        assert secret not in caplog.text and secret not in exposition
    assert "not reloaded" in caplog.text
