"""How many tokens a request reserves at admission, before any tokenizer has seen it.

The prompt is estimated at one token per 4 UTF-8 bytes (about right for English with Llama-style
tokenizers, generous for code and CJK) plus a few tokens of chat template per message; token-id
prompts are counted exactly. The estimate only has to be close: the reservation is corrected to the
upstream's real ``usage`` when the request ends.
"""

from __future__ import annotations

from typing import Any

BYTES_PER_TOKEN = 4
PER_MESSAGE = 4  # role markers and separators of a chat template


def _text_tokens(value: Any) -> int:
    if isinstance(value, str):
        return -(-len(value.encode()) // BYTES_PER_TOKEN)
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return len(value)  # already token ids
        return sum(_text_tokens(v) for v in value)
    if isinstance(value, dict):
        # Chat content parts: {"type": "text", "text": ...}; other part types count their text fields.
        return sum(_text_tokens(v) for k, v in value.items() if k in ("text", "content", "arguments"))
    return 0


def estimate_prompt_tokens(kind: str, payload: dict[str, Any]) -> int:
    if kind == "chat":
        messages = payload.get("messages")
        if not isinstance(messages, list):
            return 0
        tokens = 0
        for message in messages:
            if isinstance(message, dict):
                tokens += PER_MESSAGE + _text_tokens(message.get("content")) + _text_tokens(message.get("tool_calls"))
        return tokens
    return _text_tokens(payload.get("prompt" if kind == "completions" else "input"))


def reserved_split(kind: str, payload: dict[str, Any], default_max_tokens: int) -> tuple[int, int]:
    """(prompt estimate, the most the request may generate: ``max_tokens`` x ``n``)."""
    prompt = estimate_prompt_tokens(kind, payload)
    if kind == "embeddings":
        return prompt, 0
    limit = payload.get("max_completion_tokens", payload.get("max_tokens"))
    completion = limit if isinstance(limit, int) and limit >= 0 else default_max_tokens
    n = payload.get("n")
    return prompt, completion * (n if isinstance(n, int) and n > 1 else 1)


def reserved_tokens(kind: str, payload: dict[str, Any], default_max_tokens: int) -> int:
    """Prompt estimate + the most the request may generate: what TPM reserves at admission."""
    return sum(reserved_split(kind, payload, default_max_tokens))
