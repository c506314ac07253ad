"""One ZMQ SUB socket per discovered replica, feeding the ``KVIndex``; lifespan-owned asyncio tasks.

``KVEventHub.set_urls`` is called with every discovery update (next to the pool's): a replica that
joins gets a subscriber task, one that leaves has its task cancelled and its index entries dropped.
ZMQ reconnects by itself when an engine restarts (the index notices from the sequence numbers).
Where a replica publishes: ``endpoints[url]`` if configured, else ``tcp://<the URL's host>:<port>``
(every engine pod publishes on the same port, 5557 ``kv-events``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import zmq
import zmq.asyncio

from .index import KVIndex
from .metrics import KVMetrics
from .wire import decode

log = logging.getLogger("inferstack.kvcache")


def event_endpoint(url: str, port: int, endpoints: Mapping[str, str]) -> str:
    """Where the engine serving at ``url`` publishes its KV events."""
    explicit = endpoints.get(url.rstrip("/"))
    if explicit:
        return explicit
    host = urlsplit(url).hostname or "127.0.0.1"
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


class KVEventHub:
    def __init__(
        self,
        index: KVIndex,
        metrics: KVMetrics,
        *,
        port: int = 5557,
        endpoints: Mapping[str, str] | None = None,
        topic: str = "kv",
    ) -> None:
        self.index = index
        self._metrics = metrics
        self._port = port
        self._endpoints = {k.rstrip("/"): v for k, v in (endpoints or {}).items()}
        self._topic = topic.encode()
        self._ctx = zmq.asyncio.Context()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._leaving: set[asyncio.Task[None]] = set()

    def set_urls(self, urls: Iterable[str]) -> None:
        wanted = {u.rstrip("/") for u in urls}
        for url in set(self._tasks) - wanted:
            task = self._tasks.pop(url)
            task.cancel()
            self._leaving.add(task)
            task.add_done_callback(self._leaving.discard)
            self.index.leave(url)
        for url in wanted - set(self._tasks):
            self.index.join(url)
            endpoint = event_endpoint(url, self._port, self._endpoints)
            self._tasks[url] = asyncio.create_task(self._run(url, endpoint), name=f"kv events {url}")

    async def close(self) -> None:
        tasks = [*self._tasks.values(), *self._leaving]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._ctx.destroy(linger=0)

    async def _run(self, url: str, endpoint: str) -> None:
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, self._topic)
        sock.connect(endpoint)
        log.info("subscribed to KV events", extra={"upstream": url, "endpoint": endpoint})
        try:
            while True:
                frames = await sock.recv_multipart()
                try:
                    batch = decode(frames)
                except ValueError as exc:
                    self._metrics.malformed.inc()
                    log.warning("malformed KV event batch", extra={"upstream": url, "error": str(exc)})
                    continue
                self.index.apply(url, batch, time.monotonic(), time.time())
                self._metrics.batch(batch, self.index.replicas[url].lag)
        finally:
            with contextlib.suppress(zmq.ZMQError):
                sock.close(linger=0)
