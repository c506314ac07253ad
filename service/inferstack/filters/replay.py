"""Between the two shapes of one answer: a whole JSON response and an SSE stream.

The cache stores the whole (non-stream) response. ``sse_events`` replays it as a stream in the
chunk shape vLLM and OpenAI send; ``StreamAssembler`` rebuilds the whole response from a relayed
stream, so a streamed miss fills the cache too. Anything the assembler does not reproduce exactly
(tool calls, logprobs, reasoning, an error event, a stream that never ended) makes it give up:
such a stream is simply not cached.
"""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def sse_events(kind: str, body: bytes, include_usage: bool) -> list[bytes]:
    """The events of a stream that carries ``body`` (a cached chat or completions response)."""
    response = orjson.loads(body)
    head = {"id": response.get("id"), "created": response.get("created"), "model": response.get("model")}
    events: list[bytes] = []
    if kind == "chat":
        head["object"] = "chat.completion.chunk"
        for choice in response.get("choices", []):
            message = choice.get("message") or {}
            base = {"index": choice.get("index", 0), "logprobs": None}
            events.append(
                _event(
                    {
                        **head,
                        "choices": [
                            {
                                **base,
                                "delta": {"role": message.get("role", "assistant"), "content": ""},
                                "finish_reason": None,
                            }
                        ],
                    }
                )
            )
            if message.get("content"):
                events.append(
                    _event(
                        {**head, "choices": [{**base, "delta": {"content": message["content"]}, "finish_reason": None}]}
                    )
                )
            events.append(
                _event({**head, "choices": [{**base, "delta": {}, "finish_reason": choice.get("finish_reason")}]})
            )
    else:
        head["object"] = "text_completion"
        for choice in response.get("choices", []):
            out = {
                "index": choice.get("index", 0),
                "text": choice.get("text", ""),
                "logprobs": None,
                "finish_reason": choice.get("finish_reason"),
            }
            events.append(_event({**head, "choices": [out]}))
    if include_usage and response.get("usage") is not None:
        events.append(_event({**head, "choices": [], "usage": response["usage"]}))
    events.append(DONE)
    return events


class StreamAssembler:
    """Feed every SSE event of a stream; ``result()`` is the equivalent whole response, or None."""

    __slots__ = ("_choices", "_done", "_failed", "_head", "_kind", "_usage")

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._head: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: Any = None
        self._done = False
        self._failed = False

    def feed(self, event: bytes) -> None:
        if self._failed:
            return
        for line in event.splitlines():
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                self._done = True
                continue
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                self._failed = True
                return
            self._chunk(chunk)

    def _chunk(self, chunk: Any) -> None:
        # The engine's chunk is relayed as it is whatever its shape; only an answer of the shape this
        # understands is cached. A wrong shape read as a right one raised here, in the relay, and the
        # client got an internal error in place of the engine's stream.
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if not isinstance(chunk, dict) or "error" in chunk or not isinstance(choices or [], list):
            self._failed = True
            return
        if not self._head:
            self._head = {"id": chunk.get("id"), "created": chunk.get("created"), "model": chunk.get("model")}
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        for choice in choices or []:
            index = choice.get("index", 0) if isinstance(choice, dict) else None
            delta = choice.get("delta") or {} if isinstance(choice, dict) else None
            if (
                not isinstance(choice, dict)
                or not isinstance(index, int)
                or isinstance(index, bool)
                or not isinstance(delta, dict)
                or choice.get("logprobs") is not None
            ):
                self._failed = True
                return
            acc = self._choices.setdefault(index, {"text": [], "role": "assistant", "finish_reason": None})
            if self._kind == "chat":
                if delta.get("tool_calls") or delta.get("reasoning_content") or delta.get("function_call"):
                    self._failed = True
                    return
                if delta.get("role"):
                    acc["role"] = delta["role"]
                text = delta.get("content")
            else:
                text = choice.get("text")
            if text:
                if not isinstance(text, str):
                    self._failed = True
                    return
                acc["text"].append(text)
            if choice.get("finish_reason") is not None:
                acc["finish_reason"] = choice["finish_reason"]

    def result(self) -> bytes | None:
        if self._failed or not self._done or not self._choices:
            return None
        if any(c["finish_reason"] is None for c in self._choices.values()):
            return None
        choices: list[dict[str, Any]] = []
        for index in sorted(self._choices):
            acc = self._choices[index]
            text = "".join(acc["text"])
            if self._kind == "chat":
                choices.append(
                    {
                        "index": index,
                        "message": {"role": acc["role"], "content": text},
                        "logprobs": None,
                        "finish_reason": acc["finish_reason"],
                    }
                )
            else:
                choices.append({"index": index, "text": text, "logprobs": None, "finish_reason": acc["finish_reason"]})
        obj = "chat.completion" if self._kind == "chat" else "text_completion"
        return orjson.dumps({**self._head, "object": obj, "choices": choices, "usage": self._usage})
