"""Deterministic stand-ins for a tokenizer and a chat template.

The fake engine has no vocabulary. It counts a token per 4 characters of text (rounded up), the rule of
thumb OpenAI documents for English, so counts are deterministic, cheap and close enough for load tests.
The same rule splits a prompt into tokens for the simulator's prefix cache: token ``i`` is
``text[4*i : 4*i + 4]``, so two prompts that share their first ``k`` characters share their first
``k // 4`` tokens and the same leading blocks.

Generated text is drawn from a fixed list of 4-character words, one word per token, so the text of a
completion counts back to exactly its ``completion_tokens``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

CHARS_PER_TOKEN = 4

# 3 letters + a space: one token each under the 4-characters rule; no JSON escaping needed.
VOCABULARY: tuple[str, ...] = tuple(
    w + " "
    for w in (
        "the",
        "cat",
        "sat",
        "and",
        "saw",
        "dog",
        "ran",
        "far",
        "off",
        "sea",
        "but",
        "sun",
        "set",
        "low",
        "red",
        "sky",
        "one",
        "day",
        "new",
        "way",
        "old",
        "map",
        "big",
        "hat",
    )
)


def count_tokens(text: str) -> int:
    """Tokens in ``text``: one per 4 characters, rounded up (0 for the empty string)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def output_token(i: int) -> str:
    """The text of the ``i``-th generated token (0-based)."""
    return VOCABULARY[i % len(VOCABULARY)]


def output_text(n: int) -> str:
    return "".join(output_token(i) for i in range(n))


def render_chat(messages: Iterable[Mapping[str, Any]]) -> str:
    """The fake engine's chat template: each message in order, so a longer conversation only appends.

    Content given as a list of parts (OpenAI's multi-part form) contributes its text parts.
    """
    out: list[str] = []
    for message in messages:
        role = message.get("role", "user")
        out.append(f"<|{role}|>\n{_content_text(message.get('content'))}\n")
    out.append("<|assistant|>\n")
    return "".join(out)


def prompt_text(prompt: Any) -> str:
    """``/v1/completions``' ``prompt``: a string, a list of strings (joined), or token ids (4 chars each)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        if all(isinstance(p, int) for p in prompt):
            return "x" * (len(prompt) * CHARS_PER_TOKEN)
        return "".join(p if isinstance(p, str) else prompt_text(p) for p in prompt)
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""
