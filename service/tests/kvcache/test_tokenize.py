"""What the gateway asks the engine's /tokenize: the fields that change the engine's token ids, as sent."""

from __future__ import annotations

from inferstack.kvcache.tokenize import direct_token_ids, hashable_ids, tokenize_body


def test_chat_keeps_every_field_that_changes_the_rendering() -> None:
    payload = {
        "messages": [{"role": "user", "content": "hi"}],
        "add_generation_prompt": False,
        "chat_template_kwargs": {"enable_thinking": False},
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "temperature": 0.3,
        "max_tokens": 9,
    }
    body = tokenize_body("m", payload, "chat")
    assert body == {
        "model": "m",
        "messages": payload["messages"],
        "add_generation_prompt": False,
        "chat_template_kwargs": {"enable_thinking": False},
        "tools": payload["tools"],
    }


def test_completions_send_the_prompt_and_token_ids_need_no_call() -> None:
    assert tokenize_body("m", {"prompt": "once"}, "completions") == {"model": "m", "prompt": "once"}
    assert tokenize_body("m", {"prompt": ["once"], "add_special_tokens": False}, "completions") == {
        "model": "m",
        "prompt": "once",
        "add_special_tokens": False,
    }
    assert tokenize_body("m", {"prompt": ["a", "b"]}, "completions") is None  # a batch: routed by fallback
    assert tokenize_body("m", {"input": "x"}, "embeddings") is None
    assert tokenize_body("m", {"messages": "not a list"}, "chat") is None
    assert direct_token_ids({"prompt": [1, 2, 3]}, "completions") == [1, 2, 3]
    assert direct_token_ids({"prompt": [True, 2]}, "completions") is None
    assert direct_token_ids({"prompt": [1, 2]}, "chat") is None


def test_ids_the_block_hashes_cannot_encode_are_not_token_ids() -> None:
    # Negative, or past CBOR's 64-bit unsigned ints: hashing them raised, and the request got a 500.
    assert direct_token_ids({"prompt": [-1, 2]}, "completions") is None
    assert direct_token_ids({"prompt": [1 << 64, 2]}, "completions") is None
    assert direct_token_ids({"prompt": [(1 << 64) - 1, 0]}, "completions") == [(1 << 64) - 1, 0]
    assert hashable_ids([]) and hashable_ids([0, 5]) and not hashable_ids([1, "2"]) and not hashable_ids("12")
