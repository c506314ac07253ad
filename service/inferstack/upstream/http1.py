"""A lean HTTP/1.1 client for the data plane: POSTs to engines over kept-alive connections.

Why not aiohttp here: relaying a 32-token stream, aiohttp's per-chunk path (protocol, parser
wrapper, stream reader, waiter) and per-request set-up cost about as much CPU as the rest of the
gateway together (bench/http_client_bench.py: ``lean`` against ``aiohttp``,
bench/results/http_client.json). This client does only what the gateway needs: one request line,
a few headers and a body in one write; the response parsed by llhttp (``httptools``, which uvicorn
already uses), chunked framing included; bytes handed to the reader as they arrive, one waiter per
read, reading paused while a slow reader lets more than ``HIGH_WATER`` bytes pile up.

Connections are kept per (scheme, host, port) and reused most-recently-used first; an idle
connection is dropped after ``idle_timeout`` (below the 5 s keep-alive uvicorn, and so vLLM, closes
on) so that a request is not sent on a connection the engine is closing. A request that fails on a
reused connection before any byte of the answer arrived is sent once more on a new connection: the
engine closed the idle connection under it. Deadlines are the caller's (``asyncio.timeout``); only
connecting has its own (``connect_timeout``, raised as ``ConnectTimeout``).

The control plane (health checks, load scrapes, ``/tokenize``, discovery) keeps aiohttp: it is not
per token, and it needs what this client leaves out.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import cast
from urllib.parse import urlsplit

import httptools

HIGH_WATER = 1 << 16
"""Bytes buffered for a reader before reading from the engine pauses."""


class ConnectError(ConnectionError):
    """The connection to the engine could not be made (refused, unreachable, unresolvable)."""


class ConnectTimeout(TimeoutError):
    """Connecting to the engine took longer than ``connect_timeout``: nothing was sent."""


class ProtocolError(ConnectionError):
    """The engine closed the connection before the answer ended, or sent what is not HTTP/1.1."""


class Response:
    """One answer: status and headers once they are in, then its body as it arrives."""

    __slots__ = ("_conn", "headers", "readany", "status")

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers
        # The relay awaits this per chunk: the connection's own method, one coroutine frame fewer.
        self.readany: Callable[[], Awaitable[bytes]] = conn.read

    @property
    def content_type(self) -> str:
        """The media type, lower case, without parameters (as aiohttp's ``content_type``)."""
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()

    async def read(self) -> bytes:
        """The whole body."""
        parts = []
        while chunk := await self._conn.read():
            parts.append(chunk)
        return b"".join(parts)

    def close(self) -> None:
        """Done with the answer: its connection goes back to the pool if the answer ended, else is closed."""
        conn, self._conn = self._conn, _CLOSED
        self.readany = _CLOSED.read
        conn.release()


class _Connection(asyncio.Protocol):
    """One TCP connection and the parse of the answer being read on it (httptools calls the ``on_*``)."""

    def __init__(self, pool: Pool, key: _Key) -> None:
        self._pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.headers_done = False
        self.complete = False
        self.received = False
        self.keep_alive = True
        self.error: Exception | None = None
        self.lost = False
        self.uses = 0
        self.idle_since = 0.0

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass of it

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"The upstream sent a malformed response: {exc}"))
            self.abort()

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._pool.forget(self)
        if self.headers_done and not self.complete and not self._framed():
            self.complete = True  # a body delimited by the end of the connection has ended
            self._wake()
        elif not self.complete:
            self._fail(ProtocolError("The upstream closed the connection before the answer ended."))

    def pause_writing(self) -> None:  # the request is written in one go; nothing waits on this
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # -- the client's side
    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.uses += 1
        self.status, self.headers, self.headers_done = 0, {}, False
        self.complete = self.received = False
        self.transport.write(request)

    async def response(self) -> Response:
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self._wait()
        return Response(self)

    async def read(self) -> bytes:
        """What has arrived since the last read (waiting for something), or b"" at the end."""
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._buffered = 0
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return data
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            waiter = self._waiter = self._loop.create_future()  # inline: once per chunk
            try:
                await waiter
            finally:
                self._waiter = None

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _framed(self) -> bool:
        return "content-length" in self.headers or "transfer-encoding" in self.headers

    def release(self) -> None:
        if self.complete and self.keep_alive and not self.lost and not self._chunks and self.error is None:
            self._pool.put(self)
        else:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class _Closed:
    """The connection of a closed Response: reads end, release does nothing."""

    async def read(self) -> bytes:
        return b""

    def release(self) -> None:
        pass


_CLOSED: _Connection = _Closed()  # type: ignore[assignment]
_Key = tuple[str, str, int]


class Pool:
    """Kept-alive connections to the engines; ``post`` sends one request and returns its answer."""

    def __init__(self, connect_timeout: float, idle_timeout: float = 3.0) -> None:
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._idle: dict[_Key, list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._keys: dict[str, tuple[_Key, str]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    async def post(self, base_url: str, path: str, body: bytes, headers: dict[str, str]) -> Response:
        """Send ``body`` to ``base_url + path``; the answer once its status and headers are in."""
        key, host = self._key(base_url)
        head = [f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len(body)}\r\n"]
        head.extend(f"{name}: {value}\r\n" for name, value in headers.items())
        head.append("\r\n")
        request = "".join(head).encode("latin-1") + body
        conn = self._take(key)
        if conn is not None:
            conn.send(request)
            try:
                return await conn.response()
            except ProtocolError:
                conn.abort()
                if conn.received:
                    raise
                # The engine closed it while it was idle: once more, on a new connection.
            except BaseException:
                conn.abort()  # a timeout or a cancel: the engine must see the request go
                raise
        conn = await self._connect(key)
        conn.send(request)
        try:
            return await conn.response()
        except BaseException:
            conn.abort()
            raise

    def _key(self, base_url: str) -> tuple[_Key, str]:
        found = self._keys.get(base_url)
        if found is None:
            parts = urlsplit(base_url)
            scheme, hostname = parts.scheme, parts.hostname or ""
            port = parts.port or (443 if scheme == "https" else 80)
            found = self._keys[base_url] = ((scheme, hostname, port), parts.netloc)
        return found

    def _take(self, key: _Key) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest_ok = asyncio.get_running_loop().time() - self._idle_timeout
        while idle:
            conn = idle.pop()
            if not conn.lost and conn.idle_since >= oldest_ok:
                self._busy.add(conn)
                return conn
            conn.abort()
        return None

    async def _connect(self, key: _Key) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        context = None
        if scheme == "https":
            context = self._ssl = self._ssl or ssl.create_default_context()
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, conn = await loop.create_connection(lambda: _Connection(self, key), host, port, ssl=context)
        except TimeoutError:
            raise ConnectTimeout(f"Connecting to {host}:{port} took longer than {self._connect_timeout} s.") from None
        except OSError as exc:
            raise ConnectError(f"Connecting to {host}:{port} failed: {exc}") from exc
        if conn.transport is None:  # not called connection_made yet
            conn.transport = transport
        self._busy.add(conn)
        return conn

    def put(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        if self._closed:
            conn.abort()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        self._idle.setdefault(conn.key, []).append(conn)

    def forget(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[conn.key]

    async def close(self) -> None:
        self._closed = True
        for idle in list(self._idle.values()):
            for conn in list(idle):
                conn.abort()
        for conn in list(self._busy):
            conn.abort()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks
