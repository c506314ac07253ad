"""Simulator mode behind the HTTP API: shared prefixes hit the cache, excess requests wait."""

from __future__ import annotations

import asyncio
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from inferstack_fake_engine import EngineConfig, SimParams, running_engine

PARAMS = SimParams(max_num_seqs=2, block_size=16, step_base=0.002, decode_per_seq=0.0, prefill_per_token=0.00001)
SYSTEM = "You are a patient assistant. " * 40  # ~1160 chars: 18 full blocks of 64 chars


def chat(question: str, max_tokens: int = 4) -> dict[str, object]:
    return {
        "model": "fake-model",
        "max_tokens": max_tokens,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
    }


async def metrics(client: httpx.AsyncClient) -> dict[str, float]:
    text = (await client.get("/metrics")).text
    return {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if not s.labels.get("finished_reason")
    }


async def test_shared_system_prompt_hits_the_prefix_cache() -> None:
    async with running_engine(EngineConfig(sim=PARAMS)) as url, httpx.AsyncClient(base_url=url) as c:
        r = await c.post("/v1/chat/completions", json=chat("first question?"))
        assert r.json()["usage"]["completion_tokens"] == 4
        assert (await metrics(c))["vllm:prefix_cache_hits_total"] == 0
        await c.post("/v1/chat/completions", json=chat("a different question"))
        m = await metrics(c)
        assert m["vllm:prefix_cache_hits_total"] >= 18 * 16
        assert m["vllm:prefix_cache_queries_total"] > m["vllm:prefix_cache_hits_total"]
        assert m["vllm:generation_tokens_total"] == 8


async def test_requests_beyond_max_num_seqs_wait() -> None:
    async with running_engine(EngineConfig(sim=PARAMS)) as url, httpx.AsyncClient(base_url=url) as c:
        calls = [asyncio.create_task(c.post("/v1/chat/completions", json=chat(f"q{i}", 200))) for i in range(3)]
        deadline = time.monotonic() + 3
        while True:
            m = await metrics(c)
            if (m["vllm:num_requests_running"], m["vllm:num_requests_waiting"]) == (2, 1):
                break
            assert time.monotonic() < deadline, m
            await asyncio.sleep(0.005)
        assert 0 < m["vllm:kv_cache_usage_perc"] < 1
        done = await asyncio.gather(*calls)
        assert [r.status_code for r in done] == [200, 200, 200]
        m = await metrics(c)
        assert (m["vllm:num_requests_running"], m["vllm:num_requests_waiting"]) == (0, 0)


async def test_stream_in_sim_mode_is_paced_by_steps() -> None:
    params = SimParams(step_base=0.01, decode_per_seq=0.0, prefill_per_token=0.0)
    async with running_engine(EngineConfig(sim=params)) as url, httpx.AsyncClient(base_url=url) as c:
        start = time.monotonic()
        r = await c.post("/v1/chat/completions", json={**chat("q", 10), "stream": True})
        assert r.text.count('"content":"') == 1 + 10
        assert time.monotonic() - start >= 10 * 0.01  # one step per token
