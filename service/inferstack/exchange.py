"""One request as it moves through the pipeline (``Exchange``), and the writer of its response.

The API layer creates both; the router, the upstream client and the relay read and fill the
exchange instead of taking a long list of parameters, and write to the client only through the
``Responder``, which knows whether anything has reached the client (then: no retry, no JSON error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE, RequestResponseCycle

from .errors import GatewayError
from .relay.sse import error_event
from .types import JSON, Send

if TYPE_CHECKING:
    from .filters import Admission
    from .scheduling import Route


class ClientStalled(Exception):
    """The client stopped reading: a write to it did not finish within ``timeouts.client_write``.

    The request ends at once, without another byte to the client (it would block too), and frees
    its replica and tenant slots; the replica is not blamed.
    """


@dataclass
class Exchange:
    """What the pipeline knows of one request: what it forwards, what the access log and accounting need."""

    request_id: str
    """The client's ``X-Request-Id`` (echoed back), else ours."""
    upstream_id: str
    """Always ours: what the engine sees, so two clients' ids can never collide inside it."""
    endpoint: str
    """``chat``, ``completions`` or ``embeddings``."""
    started: float
    model: str = "unknown"
    stream: bool = False
    tenant: str = "anonymous"
    status: int = 0
    upstream: str | None = None
    attempts: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft: float | None = None
    error: str | None = None
    route: Route | None = None
    admission: Admission | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    """The validated request."""
    body: bytes = b""
    """The body sent upstream (with ``stream_options.include_usage`` added to streams)."""
    wants_usage: bool = True
    """Did the client ask for the usage chunk? If not, the relay strips the one the gateway asked for."""
    deadline: float = 0.0
    """``time.monotonic()`` by which the whole upstream exchange must end (``timeouts.total``)."""
    texts_sent: int = 0
    """Token-carrying deltas handed to the client (``sse.text_count``): billed if the stream ends early."""
    usage: JSON | None = None
    whole: bytes | None = None
    """The body of a non-stream 200, for the response cache."""
    request_headers: dict[str, str] = field(default_factory=dict)
    """The request headers the pipeline reads (``api.openai.READ_HEADERS``), decoded; no others."""
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class Responder:
    """Sends the response: started (a status line went out), stream (SSE), finished (the last byte).

    Under uvicorn (its httptools protocol) the status line and headers are written with the first
    body bytes, in one ``transport.write`` (a whole answer: all of it in one), instead of one write
    for the head and one per body send: a syscall and an ASGI send less per response
    (bench/results/ab_one_write.json). It does what uvicorn's ``send`` would: the same bytes (its
    default headers, header checks, ``connection: close``) and the same cycle state; anything it
    does not handle (a paused or closed socket, a HEAD request) takes the ASGI send.
    """

    __slots__ = ("_cycle", "_head", "_send", "finished", "started", "stream")

    @property
    def cycle(self) -> RequestResponseCycle | None:
        """uvicorn's request-response cycle behind ``send``, if the server is uvicorn."""
        return self._cycle

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.stream = False
        self.finished = False
        self._head = b""
        # uvicorn's (httptools) response cycle behind ``send``, for ``write_now``; None under another server.
        cycle = getattr(send, "__self__", None)
        self._cycle = cycle if type(cycle) is RequestResponseCycle else None

    def _own_head(self, status: int, headers: list[tuple[bytes, bytes]], chunked: bool) -> bytes:
        """The head as uvicorn's ``send`` would write it, the cycle marked as started; b"" when
        the ASGI send must do it (no uvicorn cycle, a paused or closed socket, HEAD, odd headers)."""
        cycle = self._cycle
        if (
            cycle is None
            or cycle.response_started
            or cycle.disconnected
            or cycle.flow.write_paused
            or cycle.scope["method"] == "HEAD"
        ):
            return b""
        parts = [STATUS_LINE[status]]
        for name, value in (*cycle.default_headers, *headers):
            parts += (name, b": ", value, b"\r\n")
        # Both patterns match one character: a search of the names (values) joined is a search of
        # each, two searches instead of two per header.
        if HEADER_RE.search(b"".join(parts[1::4])) or HEADER_VALUE_RE.search(b"".join(parts[3::4])):
            return b""  # uvicorn's send raises for these: let it
        if not cycle.keep_alive:
            parts.append(b"connection: close\r\n")
        if chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        cycle.chunked_encoding = chunked
        return b"".join(parts)

    def _flush_head(self) -> None:
        """The head kept back by ``start``, before a body sent the ASGI way."""
        head, self._head = self._head, b""
        cycle = self._cycle
        if cycle is not None and not cycle.disconnected:
            cycle.transport.write(head)

    def _stream_headers(self, ex: Exchange) -> list[tuple[bytes, bytes]]:
        headers = [(n, v) for n, v in ex.response_headers if n != b"content-length"]
        headers.append((b"cache-control", b"no-cache"))
        return headers

    def start_now(self, status: int, ex: Exchange) -> bool:
        """``start`` without a send (callable from ``data_received``): the head kept for the first
        body bytes. False: nothing done, ``start`` must send it the ASGI way."""
        head = self._own_head(status, self._stream_headers(ex), chunked=True)
        if not head:
            return False
        self._head = head
        self.started = self.stream = True
        return True

    async def start(self, status: int, ex: Exchange) -> None:
        # Kept for the first body bytes (one write for both); else the ASGI start.
        if not self.start_now(status, ex):
            self.started = self.stream = True
            await self._send({"type": "http.response.start", "status": status, "headers": self._stream_headers(ex)})

    async def body(self, data: bytes) -> None:
        if self._head:
            self._flush_head()
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    def write_now(self, data: bytes) -> bool:
        """A stream's body bytes written to the socket at once, if the server is uvicorn and the
        socket takes them (not paused by a slow reader): what ``body`` would write, without an ASGI
        message and two coroutines per event, which were most of the relay's remaining cost
        (bench/results/ab_write_now.json). False: nothing written, use ``body`` (which waits for
        the reader under the caller's write deadline)."""
        cycle = self._cycle
        if cycle is None or cycle.flow.write_paused or cycle.disconnected or not cycle.chunked_encoding:
            return False
        if self._head:
            head, self._head = self._head, b""
            cycle.transport.write(b"%b%x\r\n%b\r\n" % (head, len(data), data))
        else:
            cycle.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        return True

    async def end(self) -> None:
        self.finished = True
        if self._head:
            self._flush_head()
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def last(self, data: bytes) -> None:
        """The stream's last bytes and its end: one write to the socket (with the head, if it is
        still kept back), or one ASGI send."""
        self.finished = True
        cycle = self._cycle
        if cycle is not None and not (cycle.flow.write_paused or cycle.disconnected or not cycle.chunked_encoding):
            head, self._head = self._head, b""
            framed = b"%x\r\n%b\r\n" % (len(data), data) if data else b""
            cycle.transport.write(b"%b%b0\r\n\r\n" % (head, framed))
            _completed(cycle)
            return
        if self._head:
            self._flush_head()
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def whole(self, status: int, data: bytes, ex: Exchange) -> None:
        self.started = self.finished = True
        headers = [*ex.response_headers, (b"content-length", b"%d" % len(data))]
        head = self._own_head(status, headers, chunked=False)
        if head:
            cycle = self._cycle
            assert cycle is not None
            cycle.transport.write(head + data)
            _completed(cycle)
            return
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def error(self, err: GatewayError, ex: Exchange) -> None:
        for name, value in err.headers.items():
            ex.response_headers.append((name.lower().encode(), value.encode()))
        await self.error_body(err.status, err.to_body(), ex)

    async def error_body(self, status: int, body: dict[str, Any], ex: Exchange) -> None:
        if self.finished:
            return
        if self.stream:
            # Mid-stream: the status line is gone; end the stream with an error event instead.
            await self.body(error_event(body))
            await self.end()
            return
        data = orjson.dumps(body)
        headers = [(n, v) for n, v in ex.response_headers if n != b"content-type"]
        ex.response_headers[:] = [*headers, (b"content-type", b"application/json")]
        await self.whole(status, data, ex)


def _completed(cycle: RequestResponseCycle) -> None:
    """The rest of uvicorn's ``send`` after a response's last bytes are written."""
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()
