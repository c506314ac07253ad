"""End to end through the gateway to a real vLLM (CPU, the generated tiny model) with the official
``openai`` client; the gateway's token counters must agree with vLLM's own counters."""

from __future__ import annotations

import httpx
import openai
import pytest

from inferstack_devstack import LiveStack

pytestmark = pytest.mark.vllm


def scrape(url: str) -> dict[str, float]:
    """Sum every sample of each metric name (labels dropped)."""
    totals: dict[str, float] = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


@pytest.fixture
def client(live_stack: LiveStack) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=live_stack.gateway_url + "/v1", api_key=live_stack.api_key or "unused", max_retries=0, timeout=120
    )


def test_models_lists_the_served_model(client: openai.OpenAI, live_stack: LiveStack) -> None:
    # The session engine also serves LoRA adapters (test_lora_real.py): listed with the model as parent.
    models = {m.id: getattr(m, "parent", None) for m in client.models.list()}
    assert live_stack.model in models and models[live_stack.model] is None
    assert all(parent == live_stack.model for name, parent in models.items() if name != live_stack.model)


def test_chat_and_completions_stream_and_not_agree_with_vllm_token_counters(
    client: openai.OpenAI, live_stack: LiveStack
) -> None:
    before_gw, before_vllm = scrape(live_stack.gateway_admin_url), scrape(live_stack.vllm_url)
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]

    chat = client.chat.completions.create(model=live_stack.model, messages=messages, max_tokens=12)  # type: ignore[arg-type]
    assert chat.choices[0].message.content is not None
    assert chat.usage is not None and chat.usage.completion_tokens > 0

    pieces = []
    for chunk in client.chat.completions.create(
        model=live_stack.model,
        messages=messages,  # type: ignore[arg-type]
        max_tokens=12,
        stream=True,
    ):
        assert chunk.usage is None  # the gateway's own usage request is stripped
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert pieces

    text = client.completions.create(model=live_stack.model, prompt="Once upon a time", max_tokens=10)
    assert text.choices[0].text is not None and text.usage is not None

    usage_seen = None
    for chunk in client.completions.create(
        model=live_stack.model,
        prompt="Once upon a time",
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.usage is not None:
            usage_seen = chunk.usage
    assert usage_seen is not None and usage_seen.completion_tokens > 0

    after_gw, after_vllm = scrape(live_stack.gateway_admin_url), scrape(live_stack.vllm_url)

    def delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    prompt_gw = delta(after_gw, before_gw, "inferstack_prompt_tokens_total")
    completion_gw = delta(after_gw, before_gw, "inferstack_completion_tokens_total")
    assert prompt_gw == delta(after_vllm, before_vllm, "vllm:prompt_tokens_total") > 0
    assert completion_gw == delta(after_vllm, before_vllm, "vllm:generation_tokens_total") > 0
    assert delta(after_gw, before_gw, "inferstack_time_to_first_token_seconds_count") == 2
    assert delta(after_gw, before_gw, "inferstack_time_to_first_token_seconds_sum") > 0


def test_a_stream_with_continuous_usage_is_timed_and_counted_like_any_other(
    client: openai.OpenAI, live_stack: LiveStack
) -> None:
    # With continuous_usage_stats vLLM puts the usage so far into every text event: the gateway
    # must still see those events as text (its TTFT, inter-token gaps, the bill of a client that
    # leaves), and the tokens it records must be vLLM's.
    before_gw, before_vllm = scrape(live_stack.gateway_admin_url), scrape(live_stack.vllm_url)
    texts_with_usage = 0
    for chunk in client.chat.completions.create(
        model=live_stack.model,
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True, "continuous_usage_stats": True},  # type: ignore[typeddict-unknown-key]
    ):
        if chunk.choices and chunk.choices[0].delta.content and chunk.usage is not None:
            texts_with_usage += 1
    assert texts_with_usage > 1, "vLLM sent no text event with usage: the case under test did not happen"
    after_gw, after_vllm = scrape(live_stack.gateway_admin_url), scrape(live_stack.vllm_url)

    def delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta(after_gw, before_gw, "inferstack_time_to_first_token_seconds_count") == 1
    assert delta(after_gw, before_gw, "inferstack_inter_token_latency_seconds_count") >= texts_with_usage - 1
    completion = delta(after_vllm, before_vllm, "vllm:generation_tokens_total")
    assert delta(after_gw, before_gw, "inferstack_completion_tokens_total") == completion > 0


def test_vllm_errors_come_back_openai_shaped(client: openai.OpenAI, live_stack: LiveStack) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=live_stack.model, prompt="x", max_tokens=10**7)
    assert info.value.status_code == 400
    # vLLM's own vocabulary ("BadRequestError", code 400) comes back in OpenAI's.
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "invalid_request_error"
    assert info.value.body["code"] is None or isinstance(info.value.body["code"], str)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x", max_tokens=4)
    # A generation model serves no embeddings: vLLM's own answer is not OpenAI-shaped; the client's is.
    headers = {"authorization": f"Bearer {live_stack.api_key}"} if live_stack.api_key else {}
    direct = httpx.post(live_stack.vllm_url + "/v1/embeddings", json={"model": live_stack.model, "input": "x"})
    via = httpx.post(
        live_stack.gateway_url + "/v1/embeddings", json={"model": live_stack.model, "input": "x"}, headers=headers
    )
    assert 400 <= via.status_code < 500 and via.status_code == direct.status_code
    error = via.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


def test_curl_style_stream_is_plain_sse(live_stack: LiveStack) -> None:
    headers = {"authorization": f"Bearer {live_stack.api_key}"} if live_stack.api_key else {}
    with httpx.stream(
        "POST",
        live_stack.gateway_url + "/v1/chat/completions",
        timeout=120,
        headers=headers,
        json={
            "model": live_stack.model,
            "stream": True,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "Hello!"}],
        },
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
