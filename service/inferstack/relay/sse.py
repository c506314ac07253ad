"""Server-sent events as vLLM sends them: split a byte stream into events without decoding it.

The relay forwards each complete event as soon as it has arrived, byte for byte. It looks inside an
event only to answer three questions cheaply (substring checks, JSON parsed only for the usage
chunk): how many choices carry generated text (for TTFT, inter-token latency and the bill of a
stream cut short), is it the final usage chunk that the gateway asked for on the client's behalf,
is it the engine's error event, and is it the end of the stream.
"""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"
ERROR_EVENT = b'data: {"error"'
"""How an engine's mid-stream error event begins (vLLM's; the relay rewrites it in OpenAI's vocabulary)."""

# Substring tests here are ``find`` or ``partition``, not ``in``: CPython 3.11's ``bytes.__contains__``
# first tries its operand as an integer (one byte), raising and clearing a TypeError with a formatted
# message each time; ``find`` does not (300-500 ns less per test on these machines, several per
# chunk). On the per-chunk path (``whole_events``) a test for what is usually absent is
# ``partition(...)[1]``: ``find`` and ``count`` parse their arguments with ``PyArg_ParseTuple`` (about
# 200 ns a call here, more than the scan of a 200-byte event), ``partition`` takes its one argument
# as it is and, when the separator is absent, copies nothing; a single byte is tested with ``in``
# and its integer value, which takes the fast path.

# A buffer that grows past this without an event boundary is forwarded anyway: an upstream that
# never ends its events must not make the gateway buffer without bound.
MAX_PENDING = 1 << 20

_CR = ord("\r")


class EventSplitter:
    """Feed bytes, get back complete events (each with its terminating blank line)."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        if (
            not self._pending
            and chunk.endswith(b"\n\n")
            and chunk.find(b"\n\n") == len(chunk) - 2
            and chunk.find(b"\r") < 0
        ):
            return [chunk]  # the common case: a chunk is exactly one event (a few C scans, no slicing)
        data = self._pending + chunk if self._pending else chunk
        events: list[bytes] = []
        start = 0
        while True:
            end, size = _next_boundary(data, start)
            if end < 0:
                break
            events.append(data[start : end + size])
            start = end + size
        rest = data[start:]
        if len(rest) > MAX_PENDING:
            events.append(rest)
            rest = b""
        self._pending = rest
        return events

    @property
    def pending(self) -> bool:
        """Part of an event is waiting for the rest."""
        return bool(self._pending)

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest


def _next_boundary(data: bytes, start: int) -> tuple[int, int]:
    lf = data.find(b"\n\n", start)
    crlf = data.find(b"\r\n\r\n", start) if data.find(b"\r") >= 0 else -1
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    return lf, 2


def whole_events(chunk: bytes) -> int:
    """For a chunk of whole events (LF-separated, none the usage chunk, an error event nor the end): how
    many text fields it carries (``text_count``); else -1.

    The relay's fast path: such a chunk is forwarded as it is, with its text counted by a few C scans
    instead of split and looked at one by one. Anything else (CRLF, a partial event, a usage field,
    the end, whatever follows the end) returns -1 and takes the event-by-event path (a text that
    happens to hold ``data: [DONE]`` too: it costs that path, nothing else).
    """
    if (
        not chunk.endswith(b"\n\n")
        or _CR in chunk
        or chunk.partition(b'"usage":{')[1]
        or chunk.partition(b"data: [DONE]")[1]
        or chunk.partition(ERROR_EVENT)[1]
    ):
        return -1
    return text_count(chunk)


def text_count(data: bytes) -> int:
    """How many choices in ``data`` (events, one or several) carry generated tokens: chat deltas
    other than the opening role-only one and empty ones (``content``, ``reasoning`` and
    ``tool_calls`` deltas alike), and completions' non-empty ``text``. vLLM streams one choice per
    event and about one token per delta; an event may hold several choices. Both relay paths count
    with this, so a stream is timed and billed the same whichever path carried it.

    The markers cannot occur inside a JSON string (its quotes are escaped), so each match is a
    field of the event's own. (A server that puts the role and the first text in one delta, which
    vLLM does not, would have that one token uncounted.)
    """
    # The same sum as count('"delta":{"') - count('"delta":{"role"') + count('"text":"') - count('"text":""'):
    # a subtracted marker is absent where the one it extends is, and the role and completions'
    # markers are absent from most chat events, so they are looked for before they are counted.
    count = data.count(b'"delta":{"')
    if count and data.partition(b'"delta":{"role"')[1]:
        count -= data.count(b'"delta":{"role"')
    if data.partition(b'"text":"')[1]:
        count += data.count(b'"text":"') - data.count(b'"text":""')
    return count


def usage_of(event: bytes) -> dict[str, Any] | None:
    """The ``usage`` object of the final usage chunk (empty ``choices``), else None."""
    if event.find(b'"usage":{') < 0 or event.find(b'"choices":[]') < 0:
        return None
    payload = event.strip()
    if not payload.startswith(b"data:"):
        return None
    try:
        data = orjson.loads(payload[5:])
    except orjson.JSONDecodeError:
        return None
    usage = data.get("usage") if isinstance(data, dict) else None
    return usage if isinstance(usage, dict) else None


def error_event(body: dict[str, Any]) -> bytes:
    """An SSE error event as vLLM and OpenAI send one mid-stream, followed by the end marker."""
    return b"data: " + orjson.dumps(body) + b"\n\n" + DONE


def usage_of_body(data: bytes) -> dict[str, Any] | None:
    """The ``usage`` object of a whole (non-stream) answer, else None."""
    if data.find(b'"usage"') < 0:
        return None
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    usage = parsed.get("usage") if isinstance(parsed, dict) else None
    return usage if isinstance(usage, dict) else None
