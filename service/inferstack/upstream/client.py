"""The upstream connection pools, one upstream attempt, and failures mapped to errors.

Two pools: ``http1.Pool`` for the data plane (every ``attempt``: the requests that carry tokens) and
an aiohttp session for the control plane (health checks, load scrapes, ``/tokenize``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from ..config import Settings
from ..errors import UpstreamError, UpstreamTimeoutError
from ..exchange import Exchange
from .endpoint import Endpoint
from .http1 import ConnectError, ConnectTimeout, Pool, Response

_FORWARDED_RESPONSE_HEADERS = ("content-type",)


def create_pool(settings: Settings) -> Pool:
    """The data plane's pool: every attempt goes through it (why not aiohttp: ``http1``'s docstring)."""
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


@dataclass
class AttemptError(Exception):
    """An upstream attempt failed before anything reached the client: it may be retried."""

    kind: str  # connect | timeout | http_5xx | protocol
    error: UpstreamError | UpstreamTimeoutError
    retryable: bool = True
    """Safe to send to another replica: False when the answer may have been generated (a non-stream
    request cut at its response timeout): retrying would generate it again."""

    def __str__(self) -> str:
        return f"{self.kind}: {self.error.message}"


def classify(exc: BaseException) -> AttemptError:
    if isinstance(exc, ConnectTimeout):  # a TimeoutError too, but nothing was sent
        return AttemptError("connect", UpstreamError("The upstream replica is unreachable."))
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return AttemptError("timeout", UpstreamTimeoutError("The upstream replica did not answer in time."))
    if isinstance(exc, ConnectError | ConnectionRefusedError):
        return AttemptError("connect", UpstreamError("The upstream replica is unreachable."))
    return AttemptError("protocol", UpstreamError("The upstream replica broke the connection."))


@dataclass
class Reply:
    """An upstream answer whose first bytes arrived: a stream to relay, or a whole body."""

    response: Response
    first: bytes
    """The first chunk of a stream, or the whole body."""
    streaming: bool

    def close(self) -> None:
        self.response.close()


async def attempt(pool: Pool, endpoint: Endpoint, path: str, ex: Exchange, by: float) -> Reply:
    """POST ``ex.body`` to ``endpoint``; the first byte of a stream, or the whole non-stream body, by
    loop time ``by``.

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
            if streaming:
                first = await resp.readany()
                if not first:
                    raise AttemptError("protocol", UpstreamError("The upstream replica sent an empty stream."))
            else:
                first = await resp.read()
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
    ex.response_headers.extend(
        (name.encode(), resp.headers[name].encode("latin-1"))
        for name in _FORWARDED_RESPONSE_HEADERS
        if name in resp.headers
    )
    return Reply(resp, first, streaming)
