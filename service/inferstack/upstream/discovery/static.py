"""A fixed list of upstreams (``INFERSTACK_UPSTREAMS``): reported once, then nothing to watch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from .base import OnChange, Publisher


class StaticDiscovery:
    def __init__(self, urls: Iterable[str]) -> None:
        self._urls = frozenset(u.strip().rstrip("/") for u in urls if u.strip())

    async def run(self, on_change: OnChange) -> None:
        Publisher(on_change).publish(self._urls)
        await asyncio.Event().wait()  # nothing changes; run until cancelled like every provider
