"""Response bodies and SSE chunks shaped as vLLM's OpenAI server sends them.

Streams are the hot path: the bytes around a token are built once per request and each token chunk
is ``head + word + tail`` (the words need no JSON escaping), with no per-token JSON encoding.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import orjson

from .text import output_text, output_token

Kind = Literal["chat", "completions"]
DONE = b"data: [DONE]\n\n"


def new_id(kind: Kind) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def error_body(message: str, status: int, param: str | None = None) -> dict[str, Any]:
    """vLLM's error shape (OpenAI's, with the status as ``code``)."""
    kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "InternalServerError")
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


class StreamChunks:
    """The SSE events of one streamed completion."""

    __slots__ = ("_envelope", "_head", "_last_tail", "_tail", "kind")

    def __init__(self, kind: Kind, request_id: str, model: str, created: int | None = None) -> None:
        self.kind = kind
        created = int(time.time()) if created is None else created
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        envelope = b'{"id":%s,"object":"%s","created":%d,"model":%s,' % (
            orjson.dumps(request_id),
            obj.encode(),
            created,
            orjson.dumps(model),
        )
        self._envelope = envelope
        if kind == "chat":
            self._head = b"data: " + envelope + b'"choices":[{"index":0,"delta":{"content":"'
            self._tail = b'"},"logprobs":null,"finish_reason":null}]}\n\n'
            self._last_tail = b'"},"logprobs":null,"finish_reason":"%s","stop_reason":null}]}\n\n'
        else:
            self._head = b"data: " + envelope + b'"choices":[{"index":0,"text":"'
            self._tail = b'","logprobs":null,"finish_reason":null,"stop_reason":null}]}\n\n'
            self._last_tail = b'","logprobs":null,"finish_reason":"%s","stop_reason":null}]}\n\n'

    def role(self) -> bytes:
        """Chat streams open with an empty assistant delta, as vLLM's do; completions have none."""
        if self.kind != "chat":
            return b""
        return (
            b"data: " + self._envelope + b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
            b'"logprobs":null,"finish_reason":null}]}\n\n'
        )

    def tokens(self, start: int, stop: int, total: int, finish_reason: str) -> bytes:
        """Events for tokens ``start..stop-1``; the token ``total - 1`` carries ``finish_reason``."""
        parts: list[bytes] = []
        for i in range(start, stop):
            word = output_token(i).encode()
            if i == total - 1:
                parts.append(self._head + word + self._last_tail % finish_reason.encode())
            else:
                parts.append(self._head + word + self._tail)
        return b"".join(parts)

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return (
            b"data: "
            + self._envelope
            + b'"choices":[],"usage":'
            + orjson.dumps(usage(prompt_tokens, completion_tokens))
            + b"}\n\n"
        )


def error_event(message: str, status: int = 500) -> bytes:
    return b"data: " + orjson.dumps(error_body(message, status)) + b"\n\n"


def completion_body(
    kind: Kind,
    request_id: str,
    model: str,
    prompt_tokens: int,
    n: int,
    finish_reason: str,
) -> dict[str, Any]:
    text = output_text(n)
    choice: dict[str, Any]
    if kind == "chat":
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "tool_calls": []},
            "logprobs": None,
            "finish_reason": finish_reason,
            "stop_reason": None,
        }
    else:
        choice = {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": finish_reason,
            "stop_reason": None,
            "prompt_logprobs": None,
        }
    return {
        "id": request_id,
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage(prompt_tokens, n),
    }


def embeddings_body(model: str, vectors: list[list[float]], prompt_tokens: int) -> dict[str, Any]:
    return {
        "id": "embd-" + uuid.uuid4().hex,
        "object": "list",
        "created": int(time.time()),
        "model": model,
        "data": [{"index": i, "object": "embedding", "embedding": v} for i, v in enumerate(vectors)],
        "usage": usage(prompt_tokens, 0),
    }
