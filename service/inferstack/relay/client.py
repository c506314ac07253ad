"""The one shared upstream connection pool, and timeouts mapped to the gateway's errors."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from ..config import Settings
from ..errors import UpstreamError, UpstreamTimeoutError


def create_session(settings: Settings) -> aiohttp.ClientSession:
    """One pool for every upstream call. The gateway caps in-flight per replica itself, so no limit here.

    aiohttp rather than httpx: at 32 concurrent streams httpx spent about 3x the CPU per stream and
    had a far worse first-chunk p99 (bench/http_client_bench.py, bench/results/http_client.json).

    ``auto_decompress=False`` keeps bodies byte-faithful; per-call timeouts are set by the relay.
    """
    connector = aiohttp.TCPConnector(
        limit=0, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=10, enable_cleanup_closed=True
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, connect=settings.timeouts.connect),
        skip_auto_headers=("User-Agent",),
        raise_for_status=False,
    )


@dataclass
class AttemptError(Exception):
    """An upstream attempt failed before anything reached the client: it may be retried."""

    kind: str  # connect | timeout | http_5xx | protocol
    error: UpstreamError | UpstreamTimeoutError

    def __str__(self) -> str:
        return f"{self.kind}: {self.error.message}"


def classify(exc: BaseException, url: str) -> AttemptError:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return AttemptError("timeout", UpstreamTimeoutError("The upstream replica did not answer in time."))
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError):
        return AttemptError("connect", UpstreamError("The upstream replica is unreachable."))
    return AttemptError("protocol", UpstreamError("The upstream replica broke the connection."))
