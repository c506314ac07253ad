"""The fake engine speaks vLLM's OpenAI API: shapes, streams, usage, validation, request echo."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from inferstack_fake_engine import count_tokens, render_chat
from inferstack_fake_engine.text import output_text

from .conftest import sse_events

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hello there"}]}
PROMPT_TOKENS = count_tokens(render_chat(CHAT["messages"]))


async def test_health_and_models(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).status_code == 200
    models = (await client.get("/v1/models")).json()
    assert [m["id"] for m in models["data"]] == ["fake-model", "alias"]
    assert models["data"][0]["object"] == "model"


async def test_chat_non_stream_has_vllm_shape_and_usage(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == output_text(32)
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": 32,
        "total_tokens": PROMPT_TOKENS + 32,
    }


async def test_max_tokens_caps_output_with_finish_reason_length(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/completions", json={"model": "alias", "prompt": "abcdefgh", "max_tokens": 5})
    body = r.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == output_text(5)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["prompt_tokens"] == 2 and body["usage"]["completion_tokens"] == 5


async def test_chat_stream_chunks_and_usage_chunk(client: httpx.AsyncClient) -> None:
    req = {**CHAT, "stream": True, "max_tokens": 4, "stream_options": {"include_usage": True}}
    r = await client.post("/v1/chat/completions", json=req)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.content)
    assert events[-1] == "[DONE]"
    first, *tokens, usage_chunk, _ = events
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(t["choices"][0]["delta"]["content"] for t in tokens) == output_text(4)
    assert [t["choices"][0]["finish_reason"] for t in tokens] == [None, None, None, "length"]
    assert all(t["object"] == "chat.completion.chunk" and t["id"] == first["id"] for t in tokens)
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": 4,
        "total_tokens": PROMPT_TOKENS + 4,
    }


async def test_completions_stream_without_usage_has_no_usage_chunk(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/completions", json={"model": "fake-model", "prompt": "x", "stream": True})
    events = sse_events(r.content)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len(chunks) == 32
    assert all(c["object"] == "text_completion" and "usage" not in c for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == output_text(32)


async def test_embeddings_are_deterministic(client: httpx.AsyncClient) -> None:
    req = {"model": "fake-model", "input": ["same", "same", "other"]}
    data = (await client.post("/v1/embeddings", json=req)).json()
    vectors = [d["embedding"] for d in data["data"]]
    assert len(vectors) == 3 and len(vectors[0]) == 8
    assert vectors[0] == vectors[1] != vectors[2]
    assert data["usage"]["prompt_tokens"] == 1 + 1 + 2  # "other" is 5 chars: 2 tokens


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404),
        ("/v1/chat/completions", {"model": "fake-model", "messages": []}, 400),
        ("/v1/completions", {"model": "fake-model", "prompt": "x", "max_tokens": 0}, 400),
        ("/v1/completions", {"model": "fake-model", "prompt": "x", "max_tokens": 9000}, 400),
        ("/v1/embeddings", {"model": "fake-model"}, 400),
    ],
)
async def test_invalid_requests_get_openai_errors(
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, object],
    status: int,
) -> None:
    r = await client.post(path, json=body)
    assert r.status_code == status
    assert r.json()["error"]["code"] == status


async def test_not_json_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/completions", content=b"{nope")
    assert r.status_code == 400


async def test_request_id_is_echoed_and_requests_are_recorded(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/chat/completions", json={**CHAT, "stream": True}, headers={"x-request-id": "req-123", "x-extra": "1"}
    )
    assert r.headers["x-request-id"] == "req-123"
    recorded = (await client.get("/_fake/requests")).json()
    assert recorded[-1]["path"] == "/v1/chat/completions"
    assert recorded[-1]["headers"]["x-request-id"] == "req-123"
    assert recorded[-1]["body"]["messages"] == CHAT["messages"]
    assert (await client.delete("/_fake/requests")).status_code == 204
    assert (await client.get("/_fake/requests")).json() == []


async def test_metrics_export_vllm_series(client: httpx.AsyncClient) -> None:
    await client.post("/v1/completions", json={"model": "fake-model", "prompt": "abcd", "max_tokens": 3})
    await client.post("/_fake/config", json={"report_waiting": 7})
    text = (await client.get("/metrics")).text
    samples = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["vllm:num_requests_waiting"].value == 7
    assert samples["vllm:num_requests_waiting"].labels == {"engine": "0", "model_name": "fake-model"}
    assert samples["vllm:num_requests_running"].value == 0
    assert samples["vllm:generation_tokens_total"].value == 3
    assert samples["vllm:prompt_tokens_total"].value == 1
    for name in ("vllm:kv_cache_usage_perc", "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"):
        assert name in samples


def test_token_rule() -> None:
    assert [count_tokens(s) for s in ("", "a", "abcd", "abcde")] == [0, 1, 1, 2]
    assert count_tokens(output_text(10)) == 10
