"""The provider interface and the one rule every provider shares: report full sets, only on change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

OnChange = Callable[[frozenset[str]], None]
OnError = Callable[[BaseException], None]
"""Told of every failed lookup that kept the last set (the app counts them:
``inferstack_discovery_errors_total``); an answer of no replicas is not a failure."""


def ignore(_: BaseException) -> None:
    """The default ``OnError``: the failure is logged by the provider, nothing else."""


class DiscoveryProvider(Protocol):
    async def run(self, on_change: OnChange) -> None:
        """Run until cancelled; call ``on_change`` with the FULL set of upstream base URLs
        (e.g. ``http://10.0.0.5:8000``) every time it changes (and once at start)."""
        ...


class Publisher:
    """Forwards a set to ``on_change`` when it differs from the last one forwarded (always the first)."""

    def __init__(self, on_change: OnChange) -> None:
        self._on_change = on_change
        self._last: frozenset[str] | None = None

    @property
    def last(self) -> frozenset[str] | None:
        return self._last

    def publish(self, urls: frozenset[str]) -> None:
        if urls != self._last:
            self._last = urls
            self._on_change(urls)


def base_url(scheme: str, address: str, port: int) -> str:
    """``http://10.0.0.5:8000``; IPv6 literals get brackets (``http://[fd00::5]:8000``)."""
    host = f"[{address}]" if ":" in address else address
    return f"{scheme}://{host}:{port}"
