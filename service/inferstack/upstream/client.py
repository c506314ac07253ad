"""The upstream client: one attempt, its failures mapped to errors, and the connection pools.

Two pools: ``Pool`` (below) for the data plane, every ``attempt`` (the requests that carry tokens),
and an aiohttp session for the control plane (health checks, load scrapes, ``/tokenize``,
discovery): not per token, and it needs what ``Pool`` leaves out.

``Pool`` is a lean HTTP/1.1 client: POSTs to engines over kept-alive connections. Why not aiohttp
here: relaying a 32-token stream, aiohttp's per-chunk path (protocol, parser wrapper, stream
reader, waiter) and per-request set-up cost about twice this client's CPU
(bench/http_client_bench.py, ``lean`` against ``aiohttp``: bench/results/http_client.json). This
client does only what the gateway needs: one request line, a few headers and a body in one write;
the response parsed by llhttp (``httptools``, which uvicorn already uses), chunked framing
included; bytes handed to the reader as they arrive, one waiter per read, reading paused while a
slow reader lets more than ``HIGH_WATER`` bytes pile up.

Connections are kept per (scheme, host, port) and reused most-recently-used first; an idle
connection is dropped after ``idle_timeout`` (below the 5 s keep-alive uvicorn, and so vLLM, closes
on) so that a request is not sent on a connection the engine is closing. A request that fails on a
reused connection before any byte of the answer arrived is sent once more on a new connection: the
engine closed the idle connection under it. Deadlines are the caller's (``asyncio.timeout``); only
connecting has its own (``connect_timeout``, raised as ``ConnectTimeout``).
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, cast
from urllib.parse import urlsplit

import aiohttp
import httptools

from ..bounds import TooLarge
from ..config import Settings
from ..errors import UpstreamError, UpstreamTimeoutError, UpstreamTooLargeError
from ..exchange import Exchange
from .endpoint import Endpoint
from .failures import AttemptError, ConnectError, ConnectTimeout, ProtocolError

_FORWARDED_RESPONSE_HEADERS = ("content-type",)
# The response headers anything here reads (the forwarded ones, the body's framing): the only ones
# decoded, a response's others (date, server, ...) cost a lower() each.
_KEPT_RESPONSE_HEADERS = frozenset(
    {*(h.encode() for h in _FORWARDED_RESPONSE_HEADERS), b"content-length", b"transfer-encoding"}
)


def create_pool(settings: Settings) -> Pool:
    """The data plane's pool: every attempt goes through it (why not aiohttp: the module docstring)."""
    return Pool(connect_timeout=settings.timeouts.connect)


def create_session(settings: Settings) -> aiohttp.ClientSession:
    """The control plane's pool. The gateway caps in-flight per replica itself, so no limit here.

    aiohttp rather than httpx: at 32 concurrent streams httpx spent about 3x the CPU per stream and
    had a far worse first-chunk p99 (bench/http_client_bench.py, bench/results/http_client.json).

    ``auto_decompress=False`` keeps bodies byte-faithful; per-call timeouts are set by ``attempt``.
    """
    connector = aiohttp.TCPConnector(
        limit=0, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=10, enable_cleanup_closed=True
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        # An engine's cookies must never ride along on another tenant's request (and parsing them costs).
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, connect=settings.timeouts.connect),
        # No Accept-Encoding: bodies are relayed and parsed as they are, so they must not be compressed.
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        raise_for_status=False,
    )


def classify(exc: BaseException) -> AttemptError:
    if isinstance(exc, ConnectTimeout):  # a TimeoutError too, but nothing was sent
        return AttemptError("connect", UpstreamError("The upstream replica is unreachable."))
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return AttemptError("timeout", UpstreamTimeoutError("The upstream replica did not answer in time."))
    if isinstance(exc, ConnectError | ConnectionRefusedError):
        return AttemptError("connect", UpstreamError("The upstream replica is unreachable."))
    return AttemptError("protocol", UpstreamError("The upstream replica broke the connection."))


EMPTY_STREAM = "The upstream replica sent an empty stream."


@dataclass
class Reply:
    """An upstream answer: a stream to relay (its headers are in), or a whole body."""

    response: Response
    first: bytes
    """The whole body; b"" for a stream, whose first bytes the relay awaits."""
    streaming: bool
    by: float = math.inf
    """Loop time by which a stream's first byte must arrive (``timeouts.first_byte``; inf: only the
    request's total deadline)."""

    def close(self) -> None:
        self.response.close()


async def attempt(pool: Pool, endpoint: Endpoint, path: str, ex: Exchange, by: float, *, max_bytes: int) -> Reply:
    """POST ``ex.body`` to ``endpoint``; by loop time ``by``, the whole non-stream body (at most
    ``max_bytes``: past it, ``too_large``, neither retried nor held against the replica), or a
    stream's status and headers (its first byte, due by ``by`` too, is the relay's to await: it
    relays it from ``data_received``, without a task wake-up before the first token reaches the
    client; a failure before it is retried as one here would be, ``relay_stream``).

    Raises AttemptError for anything that fails before then: nothing has reached the client yet.
    """
    headers = {"content-type": "application/json", "x-request-id": ex.upstream_id}
    resp: Response | None = None
    try:
        async with asyncio.timeout_at(by):
            resp = await pool.post(endpoint.url, path, ex.body, headers)
            if resp.status >= 500:
                raise AttemptError("http_5xx", UpstreamError(f"The upstream replica failed with status {resp.status}."))
            streaming = ex.stream and resp.status == 200 and resp.content_type == "text/event-stream"
            first = b"" if streaming else await resp.read(max_bytes)
    except TooLarge:
        # Closed (not read to its end): the engine sees the connection go.
        if resp is not None:
            resp.close()
        too_large = UpstreamTooLargeError(max_bytes)
        raise AttemptError("too_large", too_large, retryable=False, replica_fault=False) from None
    except (TimeoutError, OSError) as exc:
        if resp is not None:
            resp.close()
        failure = classify(exc)
        if failure.kind == "timeout" and not ex.stream:
            failure.retryable = False
        raise failure from None
    except BaseException:
        if resp is not None:
            resp.close()
        raise
    for name in _FORWARDED_RESPONSE_HEADERS:  # (a loop: a generator costs a frame per request)
        value = resp.headers.get(name)
        if value is not None:
            ex.response_headers.append((name.encode(), value.encode("latin-1")))
    return Reply(resp, first, streaming, by)


# The data plane's pool.

HIGH_WATER = 1 << 16
"""Bytes buffered for a reader before reading from the engine pauses."""


Sink = Callable[[bytes], bool]
"""Takes a body chunk as it is parsed (True), or declines it (False: it is buffered for ``read``)."""


class _Body(Protocol):
    """What a Response reads its body through: its connection, or ``_CLOSED`` once it is closed."""

    sink: Sink | None
    _chunks: list[bytes]
    complete: bool
    error: Exception | None
    headers: dict[str, str]

    def take(self) -> bytes: ...

    async def read(self) -> bytes: ...

    def release(self) -> None: ...


class Response:
    """One answer: status and headers once they are in, then its body as it arrives."""

    __slots__ = ("_conn", "headers", "readany", "status")

    def __init__(self, conn: _Connection) -> None:
        self._conn: _Body = conn
        self.status = conn.status
        self.headers = conn.headers
        """Those headers the client reads (content-type, content-length, transfer-encoding), names in lower case."""
        # The relay awaits this per chunk: the connection's own method, one coroutine frame fewer.
        self.readany: Callable[[], Awaitable[bytes]] = conn.read

    @property
    def content_type(self) -> str:
        """The media type, lower case, without parameters (as aiohttp's ``content_type``)."""
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()

    def follow(self, sink: Sink | None) -> None:
        """Hand the body's chunks to ``sink`` as they arrive, in ``data_received``, instead of
        buffering them for ``readany`` (None: buffer again). A stream's relay then costs no task
        wake-up per chunk. The chunks one read brings go to the sink together, joined, after the
        read is parsed: one call and one write to the client for them instead of one each (an
        upstream's chunks arrive several to a read when the gateway lags, and a stream's last
        chunks usually do). Set only while nothing is buffered (``buffered`` is False), so chunks
        stay in order: a sink that declines a chunk is unset with it, and the chunk and those after
        it wait for ``readany``."""
        self._conn.sink = sink

    @property
    def following(self) -> bool:
        """A sink takes the body's chunks as they are parsed (``follow``)."""
        return self._conn.sink is not None

    @property
    def buffered(self) -> bool:
        """Chunks wait for ``readany``."""
        return bool(self._conn._chunks)

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body; ``TooLarge`` once it passes ``limit`` bytes (declared, or as it arrives:
        nothing past the bound and one chunk is held)."""
        conn = self._conn
        if limit is not None:
            declared = conn.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise TooLarge(f"{declared} bytes declared, more than {limit}")
        if conn.complete and conn.error is None:  # all of it arrived with the headers: no read to wait for
            data = conn.take()
            if limit is not None and len(data) > limit:
                raise TooLarge(f"more than {limit} bytes")
            return data
        parts = []
        size = 0
        while chunk := await conn.read():
            size += len(chunk)
            if limit is not None and size > limit:
                raise TooLarge(f"more than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def close(self) -> None:
        """Done with the answer: its connection goes back to the pool if the answer ended, else is closed."""
        conn, self._conn = self._conn, _CLOSED
        self.readany = _CLOSED.read
        conn.sink = None
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
        self.sink: Sink | None = None
        self._taken: bytes | None = None
        """The body of the read being parsed, for the sink (``follow``): its first chunk, the next
        ones in ``_more`` (one slot, not a list: a read usually brings one chunk)."""
        self._more: list[bytes] = []
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
        self.idle_since = 0.0

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass of it

    def data_received(self, data: bytes) -> None:
        self.received = True
        error = None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            error = ProtocolError(f"The upstream sent a malformed response: {exc}")
        body = self._taken
        if body is not None:
            # What the read brought for the sink (before an error too), joined; inline: once a chunk.
            self._taken = None
            if self._more:
                body = b"".join((body, *self._more))
                self._more.clear()
            sink = self.sink
            if sink is None or not sink(body):
                self.sink = None  # declined: these chunks and those after them go to ``read``, in order
                self._buffer(body)
        if error is not None:
            self._fail(error)
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
        name = name.lower()
        if name in _KEPT_RESPONSE_HEADERS:
            self.headers[name.decode("latin-1")] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            # Handed to the sink once the read is parsed (``data_received``).
            if self._taken is None:
                self._taken = body
            else:
                self._more.append(body)
            return
        self._buffer(body)

    def _buffer(self, body: bytes) -> None:
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
        self.status, self.headers, self.headers_done = 0, {}, False
        self.complete = self.received = False
        self.transport.write(request)

    async def response(self) -> Response:
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self._wait()
        return Response(self)

    def take(self) -> bytes:
        """What has arrived since the last read (b"" if nothing), without waiting."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def read(self) -> bytes:
        """What has arrived since the last read (waiting for something), or b"" at the end."""
        while True:
            if self._chunks:
                return self.take()
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

    sink: Sink | None = None
    _chunks: list[bytes] = []  # noqa: RUF012 (always empty)
    complete = True
    error: Exception | None = None
    headers: dict[str, str] = {}  # noqa: RUF012 (always empty)

    def take(self) -> bytes:
        return b""

    async def read(self) -> bytes:
        return b""

    def release(self) -> None:
        pass


_CLOSED: _Body = _Closed()
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
        head = f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len(body)}\r\n"
        for name, value in headers.items():  # (a loop: a generator costs a frame per request)
            head += f"{name}: {value}\r\n"
        request = (head + "\r\n").encode("latin-1") + body
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
        now = conn.idle_since = asyncio.get_running_loop().time()
        idle = self._idle.setdefault(conn.key, [])
        # Oldest first: those past the idle timeout are closed here, so a burst's connections do not
        # stay open (until the engine closes them) when fewer are taken again.
        while idle and idle[0].idle_since < now - self._idle_timeout:
            idle.pop(0).abort()
        idle.append(conn)

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
