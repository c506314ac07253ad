"""The response cache's parts: key, policy, byte store, and stream <-> whole-response conversion."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from inferstack.filters.cache_key import cache_key, cache_policy
from inferstack.filters.cache_store import MemoryStore, RedisStore
from inferstack.filters.replay import StreamAssembler, sse_events

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi  there"}], "temperature": 0, "max_tokens": 8}


def test_key_ignores_json_formatting_and_field_order_but_not_content() -> None:
    reordered = orjson.loads(
        b'{ "max_tokens" : 8, "temperature": 0.0,\n "messages": [{"content": "Hi  there",'
        b' "role": "user"}], "model": "m", "stream": true}'
    )
    assert cache_key("chat", reordered, "r1", "t") == cache_key("chat", CHAT, "r1", "t")
    changed_text = {**CHAT, "messages": [{"role": "user", "content": "Hi there"}]}  # whitespace in content counts
    for other in (
        cache_key("chat", changed_text, "r1", "t"),
        cache_key("chat", {**CHAT, "top_p": 0.9}, "r1", "t"),
        cache_key("chat", CHAT, "r2", "t"),
        cache_key("chat", CHAT, "r1", "other-tenant"),
        cache_key("completions", CHAT, "r1", "t"),
    ):
        assert other != cache_key("chat", CHAT, "r1", "t")


@pytest.mark.parametrize(
    "number",
    [b"123456789012345678901234567890", b"1e30", b"-1e30", b"18446744073709551616", b"18446744073709551615"],
)
def test_key_of_numbers_beyond_64_bits(number: bytes) -> None:
    # orjson parses what does not fit 64 bits as a float; whole floats must not become ints it cannot encode.
    payload = orjson.loads(b'{"model": "m", "prompt": "x", "temperature": 0, "seed": %s, "n": [%s]}' % (number, number))
    assert cache_key("completions", payload, "r", "t") == cache_key("completions", dict(payload), "r", "t")
    assert cache_key("completions", payload, "r", "t") != cache_key("completions", {**payload, "seed": 1}, "r", "t")


@pytest.mark.parametrize(
    ("payload", "cache_control", "opt", "expected"),
    [
        (CHAT, None, None, (True, True)),
        ({**CHAT, "temperature": 0.7}, None, None, (False, False)),
        ({**CHAT, "temperature": 0.7, "seed": 42}, None, None, (True, True)),
        ({**CHAT, "temperature": 0.7}, None, "on", (True, True)),
        (CHAT, None, "off", (False, False)),
        (CHAT, "no-store", None, (False, False)),
        (CHAT, "max-age=0, no-cache", None, (False, True)),
        ({k: v for k, v in CHAT.items() if k != "temperature"}, None, None, (False, False)),
    ],
)
def test_policy(
    payload: dict[str, Any], cache_control: str | None, opt: str | None, expected: tuple[bool, bool]
) -> None:
    policy = cache_policy("chat", payload, cache_control, opt)
    assert (policy.lookup, policy.store) == expected


async def test_memory_store_expires_and_evicts_least_recently_used() -> None:
    now = [0.0]
    evicted: list[int] = []
    store = MemoryStore(max_bytes=30, clock=lambda: now[0], on_evict=evicted.append)
    await store.set("a", b"x" * 10, ttl=5)
    await store.set("b", b"x" * 10, ttl=100)
    await store.set("c", b"x" * 10, ttl=100)
    assert await store.get("a") is not None  # a is now the most recently used
    await store.set("d", b"x" * 10, ttl=100)  # over 30 bytes: b goes
    assert await store.get("b") is None and await store.get("a") is not None
    assert store.bytes == 30 and evicted == [1] and store.evictions == 1
    now[0] = 6.0
    assert await store.get("a") is None and store.bytes == 20
    await store.set("huge", b"x" * 31, ttl=100)  # larger than the whole cache: not stored
    assert await store.get("huge") is None and store.bytes == 20


async def test_redis_store_ttl_and_add(redis_client: Any) -> None:
    store = RedisStore(redis_client, "t:")
    assert await store.add("k", b"1", ttl=60) is True
    assert await store.add("k", b"2", ttl=60) is False
    assert await store.get("k") == b"1"
    await store.set("short", b"v", ttl=0.05)
    assert 0 < await redis_client.pttl("t:short") <= 50


def chat_stream(content_parts: list[str], **extra_delta: Any) -> list[bytes]:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    events += [
        {**head, "choices": [{"index": 0, "delta": {"content": p, **extra_delta}, "finish_reason": None}]}
        for p in content_parts
    ]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**head, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def test_a_stream_assembles_into_the_whole_response_and_replays_the_same_text() -> None:
    assembler = StreamAssembler("chat")
    for event in chat_stream(["Hel", "lo"]):
        assembler.feed(event)
    whole = assembler.result()
    assert whole is not None
    response = orjson.loads(whole)
    assert response["object"] == "chat.completion"
    assert response["choices"][0]["message"] == {"role": "assistant", "content": "Hello"}
    assert response["usage"]["completion_tokens"] == 2
    replayed = sse_events("chat", whole, include_usage=False)
    assert replayed[-1] == b"data: [DONE]\n\n"
    chunks = [orjson.loads(e[6:]) for e in replayed[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-1" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hello"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and "usage" not in chunks[-1]
    with_usage = sse_events("chat", whole, include_usage=True)
    assert orjson.loads(with_usage[-2][6:])["usage"]["total_tokens"] == 5


def test_streams_the_assembler_cannot_reproduce_are_not_cached() -> None:
    unfinished = StreamAssembler("chat")
    for event in chat_stream(["a"])[:-1]:  # no [DONE]: the stream broke
        unfinished.feed(event)
    assert unfinished.result() is None
    tools = StreamAssembler("chat")
    for event in chat_stream(["a"], tool_calls=[{"index": 0, "function": {"name": "f"}}]):
        tools.feed(event)
    assert tools.result() is None


def test_completions_replay() -> None:
    whole = orjson.dumps(
        {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "text": "abc", "finish_reason": "length"}],
        }
    )
    events = sse_events("completions", whole, include_usage=False)
    assembler = StreamAssembler("completions")
    for e in events:
        assembler.feed(e)
    result = assembler.result()
    assert result is not None and orjson.loads(result)["choices"][0]["text"] == "abc"
