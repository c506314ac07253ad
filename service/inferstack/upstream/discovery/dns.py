"""DNS discovery: the A/AAAA records of a name (a Kubernetes headless Service), re-resolved periodically.

A headless Service answers with one record per *ready* pod, so readiness comes with the answer. Two
kinds of failure are told apart:

- "no such name" / "no records" (``EAI_NONAME``, ``EAI_NODATA``) is an answer: a headless Service
  with zero ready pods returns exactly that, so the set becomes empty (scale to zero works);
- anything else (timeouts, ``EAI_AGAIN``, a DNS server down) says nothing about the replicas: the
  last good set is kept and the next interval tries again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

from .base import OnChange, OnError, Publisher, base_url, ignore

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(name, port) -> addresses``; raises ``socket.gaierror`` (or ``OSError``) on failure."""

_NO_RECORDS = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


async def getaddrinfo_resolver(name: str, port: int) -> list[str]:
    """The system resolver, without blocking the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class DnsDiscovery:
    def __init__(
        self,
        name: str,
        port: int,
        *,
        interval: float = 5.0,
        scheme: str = "http",
        resolver: Resolver = getaddrinfo_resolver,
        resolve_timeout: float = 5.0,
        on_error: OnError = ignore,
    ) -> None:
        self._name, self._port, self._interval, self._scheme = name, port, interval, scheme
        self._resolver, self._resolve_timeout = resolver, resolve_timeout
        self._on_error = on_error

    async def resolve(self) -> frozenset[str] | None:
        """The current set, or None when the lookup failed without an answer (keep the last set)."""
        try:
            async with asyncio.timeout(self._resolve_timeout):
                addresses = await self._resolver(self._name, self._port)
        except socket.gaierror as exc:
            if exc.errno in _NO_RECORDS:
                return frozenset()
            log.warning("dns discovery: resolving %s failed (%s); keeping the last set", self._name, exc)
            self._on_error(exc)
            return None
        except (OSError, TimeoutError) as exc:
            log.warning("dns discovery: resolving %s failed (%s); keeping the last set", self._name, exc)
            self._on_error(exc)
            return None
        return frozenset(base_url(self._scheme, a, self._port) for a in addresses)

    async def run(self, on_change: OnChange) -> None:
        publisher = Publisher(on_change)
        while True:
            urls = await self.resolve()
            if urls is not None:
                publisher.publish(urls)
            elif publisher.last is None:
                publisher.publish(frozenset())  # the contract: report once at start, even if it is "none yet"
            await asyncio.sleep(self._interval)
