"""A real vLLM (CPU) serving the tiny model: the OpenAI endpoints and the metrics the gateway relies on.

Uses the session fixture ``vllm_engine`` (root ``conftest.py``): one engine for the whole run, started
through ``inferstack_engine.vllm.command`` as ``make up`` starts it. About 40 s to start, 2 s for the tests.
"""

from __future__ import annotations

import json

import httpx
import pytest

pytestmark = pytest.mark.vllm

MODEL = "tiny-llama"


def test_completions(vllm_engine: str) -> None:
    resp = httpx.post(
        f"{vllm_engine}/v1/completions",
        timeout=60,
        json={"model": MODEL, "prompt": "The river carried", "max_tokens": 5, "temperature": 0},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == MODEL
    assert body["usage"]["completion_tokens"] == 5 and body["usage"]["prompt_tokens"] > 1
    assert isinstance(body["choices"][0]["text"], str)


def test_chat_completions(vllm_engine: str) -> None:
    resp = httpx.post(
        f"{vllm_engine}/v1/chat/completions",
        timeout=60,
        json={
            "model": MODEL,
            "max_tokens": 4,
            "messages": [{"role": "user", "content": "Hello!"}],
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["choices"][0]["message"]["role"] == "assistant"
    # The chat template wraps the message: far more prompt tokens than the 2-3 of "Hello!" alone.
    assert body["usage"]["prompt_tokens"] >= 8


def test_chat_completions_stream(vllm_engine: str) -> None:
    events = []
    with httpx.stream(
        "POST",
        f"{vllm_engine}/v1/chat/completions",
        timeout=60,
        json={
            "model": MODEL,
            "max_tokens": 6,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Tell me about bread."}],
        },
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["usage"]["completion_tokens"] == 6  # the usage chunk the gateway reads
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content") is not None) >= 1


def test_metrics_count_prompt_tokens(vllm_engine: str) -> None:
    httpx.post(
        f"{vllm_engine}/v1/completions",
        timeout=60,
        json={"model": MODEL, "prompt": "Count these tokens", "max_tokens": 1},
    ).raise_for_status()
    metrics = httpx.get(f"{vllm_engine}/metrics", timeout=10).text
    samples = [line for line in metrics.splitlines() if line.startswith("vllm:prompt_tokens_total{")]
    assert samples, "vllm:prompt_tokens_total missing"
    assert f'model_name="{MODEL}"' in samples[0]
    assert float(samples[0].rsplit(" ", 1)[1]) > 0
    # The CPU backend's KV block is 128 tokens: prefix hashing must not assume the GPUs' 16.
    assert 'block_size="128"' in metrics
