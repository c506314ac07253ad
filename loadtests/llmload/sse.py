"""Parse an OpenAI-compatible server-sent-event stream as bytes arrive.

Chunks from the network split lines anywhere, so the parser buffers until a blank line ends an
event (the SSE rule), then classifies the JSON payload. A *content* event is one that carries
generated tokens, counted as the gateway's TTFT and ITL histograms count them (its
``relay/sse.py`` ``text_count``): a chat delta with any field but the role-only first chunk vLLM
sends (``role`` then ``content: ""``), an empty ``content`` included (vLLM sends ``""`` for a token
whose bytes do not yet end a character: random weights do that often), or a completion's non-empty
``text``. Before session 12 an empty ``content`` was not content here: the TTFT locust measured
was one token later than the gateway's whenever a stream began with such a token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    text: str = ""
    usage: dict[str, int] | None = None
    error: str | None = None
    done: bool = False
    tokens: int = 0
    """Choices that carry a generated token (their text may be empty)."""

    @property
    def is_content(self) -> bool:
        return self.tokens > 0 or bool(self.text)


class SSEParser:
    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += chunk
        events: list[Event] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return events
            line = self._buffer[:newline].rstrip(b"\r")
            self._buffer = self._buffer[newline + 1 :]
            if not line:
                if self._data:
                    events.append(classify(b"\n".join(self._data)))
                    self._data = []
            elif line.startswith(b"data:"):
                self._data.append(line[5:].removeprefix(b" "))
            # Comments (":"), "event:", "id:" and "retry:" lines carry nothing we measure.

    def close(self) -> list[Event]:
        """Events still buffered when the stream ends without a final blank line."""
        events = self.feed(b"\n\n") if self._buffer or self._data else []
        self._buffer, self._data = b"", []
        return events


def classify(data: bytes) -> Event:
    if data.strip() == b"[DONE]":
        return Event(done=True)
    try:
        payload = json.loads(data)
    except ValueError:
        return Event(error="malformed_event")
    if not isinstance(payload, dict):
        return Event(error="malformed_event")
    if "error" in payload:
        return Event(error=_error_type(payload["error"]))
    usage = payload.get("usage")
    choices = payload.get("choices") or []
    return Event(text=_text(choices), usage=usage if isinstance(usage, dict) else None, tokens=_tokens(choices))


def _tokens(choices: list[Any]) -> int:
    tokens = 0
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            tokens += bool(delta) and next(iter(delta)) != "role"
        elif isinstance(choice.get("text"), str):
            tokens += choice["text"] != ""
    return tokens


def _text(choices: list[Any]) -> str:
    parts: list[str] = []
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta") or {}
        parts.append(delta.get("content") or "")
        parts.append(delta.get("reasoning_content") or "")
        for call in delta.get("tool_calls") or []:
            parts.append((call.get("function") or {}).get("arguments") or "")
    return "".join(parts)


def _error_type(error: Any) -> str:
    # Bounded vocabulary: error types become rows in locust's failure table.
    if isinstance(error, dict):
        return str(error.get("type") or error.get("code") or "unknown")
    return "unknown"
