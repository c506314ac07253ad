"""The listener's own defences: deadlines on reading a request, and a cap on connections.

uvicorn arms its keep-alive timer only after a response, and has no header or body deadline, so a
connection that sends nothing, or its headers or body a byte at a time (slowloris), stays open for
ever, holding a socket and, once its headers are in, a request task reading the body before auth.
``guarded_protocol`` adds, per connection, one timer that always holds the current deadline:

    connected / response sent -> idle (``keepalive``) -> first byte -> headers complete by
    ``header_timeout`` -> whole body by ``body_timeout`` -> (the app answers; no deadline here)

On expiry an idle connection is closed; a request still being read gets ``408`` and is closed
(the app sees a disconnect). Headers larger than ``max_header_bytes`` get ``431``. A connection
beyond ``max_connections`` on the public port gets ``503`` and is closed (the admin port is not
capped, so metrics stay readable during a flood). Every answer is an OpenAI error body.
Costs: a float per phase (the timer moves itself to a later deadline when it fires), none per
chunk of a stream; uvicorn's own keep-alive timer (a ``call_later`` per response, cancelled by the
next request) is not armed, ours holds the idle bound.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import Listener

_IDLE, _HEADERS, _BODY, _ANSWERING = range(4)
_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


def _error_response(status: int, message: str, code: str) -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}})
    return b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (
        status,
        _REASONS[status],
        len(body),
        body,
    )


class _Count:
    """Open public connections, shared by the protocol objects of one server."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with read deadlines, a header size bound and a connection cap."""

    limits: Listener = Listener()
    admin_port: int | None = None
    public: _Count = _Count()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counted = False
        self._deadline: asyncio.TimerHandle | None = None
        self._due: float | None = None
        """Loop time the current phase must end by (None: no deadline); ``_deadline`` fires at or before it."""
        self._phase = _IDLE
        self._header_bytes = 0

    def _arm(self, seconds: float) -> None:
        # A later deadline only moves ``_due``: the pending timer fires first and moves itself there.
        # A keep-alive connection's four phases per request cost no timer, one per keep-alive interval.
        due = self._due = self.loop.time() + seconds
        handle = self._deadline
        if handle is not None:
            if handle.when() <= due:
                return
            handle.cancel()
        self._deadline = self.loop.call_at(due, self._fire)

    def _disarm(self) -> None:
        self._due = None  # the pending timer, if any, finds no deadline and stops

    def _stop(self) -> None:
        self._due = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _fire(self) -> None:
        self._deadline = None
        due = self._due
        if due is None:
            return
        # (a timer may fire up to the loop's millisecond resolution early: that is not "too soon")
        if due > self.loop.time() + 0.001:
            self._deadline = self.loop.call_at(due, self._fire)
            return
        self._due = None
        self._expired()

    def _reject(self, status: int, message: str, code: str) -> None:
        """Answer the request being read (unless the app already did) and close the connection."""
        self._disarm()
        if self.transport.is_closing():
            return
        # While headers are read, ``cycle`` is the previous request's (or None): nothing answered
        # this one yet. While the body is read, the app may have answered already (a 413, say).
        if self._phase != _BODY or not self.cycle.response_started:
            self.transport.write(_error_response(status, message, code))
        self.transport.close()

    def _expired(self) -> None:
        if self._phase == _IDLE:
            if not self.transport.is_closing():
                self.transport.close()
        else:
            self._reject(408, "The request was not received in time.", "request_timeout")

    def send_400_response(self, msg: str) -> None:
        # httptools rejected the bytes (or a callback below stopped it): an OpenAI body, not text.
        if self._header_bytes > self.limits.max_header_bytes:
            self._reject(431, f"The request headers exceed {self.limits.max_header_bytes} bytes.", "headers_too_large")
        else:
            self._reject(400, "Invalid HTTP request.", "invalid_http_request")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sockname = transport.get_extra_info("sockname")
        # Only the public listener is capped: under a connection flood the admin listener (metrics,
        # on a port only the cluster reaches) must still answer, and its scrapes take no public slot.
        if not (isinstance(sockname, tuple) and sockname[1] == self.admin_port):
            if self.public.n >= self.limits.max_connections:
                self._reject(503, "The gateway has too many open connections; retry shortly.", "too_many_connections")
                return
            self.public.n += 1
            self._counted = True
        # The keep-alive timeout holds from the first request on, not only between requests.
        self._arm(self.limits.keepalive_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        if self._counted:
            self._counted = False
            self.public.n -= 1
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEADERS
        self._header_bytes = 0
        self._arm(self.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count_header_bytes(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        # uvicorn's on_header inlined, with the size bound (``_count_header_bytes``): six calls a request.
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > self.limits.max_header_bytes:
            raise httptools.HttpParserCallbackError("headers too large")
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def _count_header_bytes(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.limits.max_header_bytes:
            # Stops the parser; uvicorn then calls send_400_response, which answers 431.
            raise httptools.HttpParserCallbackError("headers too large")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._phase = _BODY
        self._arm(self.limits.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        if self.cycle is not None and self.cycle.response_complete:
            # The app answered before the body was in (a 413, say): the connection is idle now.
            self._phase = _IDLE
            self._arm(self.limits.keepalive_timeout)
        else:
            self._phase = _ANSWERING

    def on_response_complete(self) -> None:
        # uvicorn's, without its keep-alive timer (a call_later per response, cancelled by the next
        # request's bytes): ours holds the idle bound, from the first request on, and a pipelined
        # request already being read keeps its deadline.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._phase == _ANSWERING:
            self._phase = _IDLE
            self._arm(self.limits.keepalive_timeout)


def guarded_protocol(limits: Listener, admin_port: int | None = None) -> type[GuardedProtocol]:
    """A protocol class bound to these limits and its own connection count (uvicorn builds one
    protocol object per connection); connections to ``admin_port`` are not capped."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits, "admin_port": admin_port, "public": _Count()})
