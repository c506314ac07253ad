"""A request's prompt token ids, exactly as the engine will see them: asked of the engine's ``/tokenize``.

vLLM's ``/tokenize`` takes the same ``messages`` (rendered with the model's own chat template, with
the request's ``add_generation_prompt``, ``continue_final_message``, ``chat_template_kwargs`` and
``tools``) or ``prompt`` (with ``add_special_tokens``) as the generation endpoints, so its answer is
the engine's input by construction: no tokenizer files in the gateway, no template to re-implement.
Its cost (one small HTTP round trip, measured in docs/routing.md) is the price of that exactness.

Any failure (timeout, engine error, a request shape ``/tokenize`` does not take) answers None: the
request is then routed by the approximate policy, never failed. So do ids that cannot be hashed as
vLLM hashes them (negative, or past 64 bits: CBOR's unsigned ints), whether a client sent them as its
prompt or an engine answered them: the engine judges such a prompt, the scorer never sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from ..bounds import TOKENIZE_BYTES, read_bounded

# Request fields that change the engine's token ids, copied to /tokenize as they are.
_CHAT_FIELDS = (
    "messages",
    "add_generation_prompt",
    "continue_final_message",
    "add_special_tokens",
    "chat_template",
    "chat_template_kwargs",
    "tools",
    "documents",
)


def tokenize_body(model: str, payload: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """The ``/tokenize`` body for a chat or completions request; None when there is nothing to ask."""
    if kind == "chat":
        if not isinstance(payload.get("messages"), list):
            return None
        body = {k: payload[k] for k in _CHAT_FIELDS if k in payload}
    elif kind == "completions":
        prompt = payload.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]  # a batch of one
        if not isinstance(prompt, str):
            return None
        body = {"prompt": prompt}
        if "add_special_tokens" in payload:
            body["add_special_tokens"] = payload["add_special_tokens"]
    else:
        return None
    body["model"] = model
    return body


MESSAGE_CHARS = 32
"""What a chat template adds around each message (role markers, separators), about: ``prompt_chars``."""


def prompt_chars(payload: Mapping[str, Any], kind: str, stop: int) -> int:
    """About how many characters the engine tokenizes for this request: its text, and ``MESSAGE_CHARS`` per
    chat message. Nothing is rendered (a template's cost grows with the messages, so this counts them);
    the count stops once it passes ``stop``."""
    if kind == "completions":
        prompt = payload.get("prompt")
        if isinstance(prompt, list):
            return sum(len(p) for p in prompt if isinstance(p, str))
        return len(prompt) if isinstance(prompt, str) else 0
    messages = payload.get("messages") if kind == "chat" else None
    if not isinstance(messages, list):
        return 0
    total = 0
    for message in messages:
        total += MESSAGE_CHARS
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                total += len(text) if isinstance(text, str) else MESSAGE_CHARS
        if total > stop:
            break
    return total


MAX_TOKEN_ID = (1 << 64) - 1
"""The largest id ``blocks.prompt_block_hashes`` can encode (a CBOR unsigned int)."""


def hashable_ids(ids: object) -> bool:
    """A list of token ids the block hashes can be computed from."""
    return isinstance(ids, list) and all(
        isinstance(t, int) and not isinstance(t, bool) and 0 <= t <= MAX_TOKEN_ID for t in ids
    )


def direct_token_ids(payload: Mapping[str, Any], kind: str) -> list[int] | None:
    """A completions prompt given as token ids needs no tokenizer."""
    prompt = payload.get("prompt") if kind == "completions" else None
    return list(prompt) if prompt and hashable_ids(prompt) else None


async def engine_token_ids(
    session: aiohttp.ClientSession, engine_url: str, body: Mapping[str, Any], limit: float
) -> list[int] | None:
    try:
        async with session.post(
            engine_url + "/tokenize", json=body, timeout=aiohttp.ClientTimeout(total=limit)
        ) as resp:
            if resp.status != 200:
                return None
            answer = orjson.loads(await read_bounded(resp, TOKENIZE_BYTES))
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return None
    tokens = answer.get("tokens") if isinstance(answer, dict) else None
    return tokens if hashable_ids(tokens) else None
