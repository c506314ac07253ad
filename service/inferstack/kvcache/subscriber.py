"""One ZMQ SUB socket per discovered replica, feeding the ``KVIndex``; lifespan-owned asyncio tasks.

``KVEventHub.set_urls`` is called with every discovery update (next to the pool's): a replica that
joins gets a subscriber task, one that leaves has its task cancelled and its index entries dropped
(in steps: ``set_urls``).
ZMQ reconnects by itself when an engine restarts (the index notices from the sequence numbers); after
a protocol error (a message over the size bound) it does not, and the subscriber subscribes again.
Where a replica publishes: ``endpoints[url]`` if configured, else ``tcp://<the URL's host>:<port>``
(every engine pod publishes on the same port, 5557 ``kv-events``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import urlsplit

import zmq
import zmq.asyncio

from ..tasks import stop
from .index import KVIndex
from .metrics import KVMetrics
from .wire import decode_parts

log = logging.getLogger("inferstack.kvcache")

RECEIVE_QUEUE = 1000  # messages ZMQ holds for a busy loop (its default, stated)
RESUBSCRIBE_AFTER = 1.0  # seconds between a dropped connection and the next subscription
HASHES_PER_STEP = 2048
"""Block hashes decoded and applied between two turns of the event loop: about 3 ms (1.5 us a hash,
session 10). A message under ``max_message_bytes`` (1 MiB) holds up to ~116,000 64-bit hashes (or a
million one-byte ones), which applied at once held the loop 0.2 s (0.74 s); vLLM's batch of one engine
step (512 blocks at 8,192 batched tokens) is one step."""


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
        max_message_bytes: int = 1 << 20,
    ) -> None:
        self.index = index
        self._metrics = metrics
        self._port = port
        self._endpoints = {k.rstrip("/"): v for k, v in (endpoints or {}).items()}
        self._topic = topic.encode()
        self._max_message_bytes = max_message_bytes
        self._ctx = zmq.asyncio.Context()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._leaving: set[asyncio.Task[None]] = set()
        self._dropping: dict[str, asyncio.Task[None]] = {}
        """Replicas that left, their index entries being dropped in steps (``_drop``)."""

    def set_urls(self, urls: Iterable[str]) -> None:
        """A replica that leaves has its subscription cancelled (it applies nothing more) and its
        entries dropped ``HASHES_PER_STEP`` at a time (up to ``index_capacity``: that many in one
        step held the loop 0.4 s at 116,000 blocks); no request is routed to it meanwhile (it has
        left the cluster too). One that comes back before that ended has the rest dropped at once."""
        wanted = {u.rstrip("/") for u in urls}
        for url in set(self._tasks) - wanted:
            task = self._tasks.pop(url)
            task.cancel()
            self._forget_later(task)
            drop = self._dropping[url] = asyncio.create_task(self._drop(url), name=f"kv drop {url}")
            self._forget_later(drop)
        for url in wanted - set(self._tasks):
            dropping = self._dropping.pop(url, None)
            if dropping is not None:
                dropping.cancel()
                self.index.leave(url)
            self.index.join(url)
            endpoint = event_endpoint(url, self._port, self._endpoints)
            self._tasks[url] = asyncio.create_task(self._run(url, endpoint), name=f"kv events {url}")

    def _forget_later(self, task: asyncio.Task[None]) -> None:
        """Kept (and cancelled by ``close``) until it ends."""
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

    async def _drop(self, url: str) -> None:
        await _paced(self.index.leaving(url, HASHES_PER_STEP))
        if self._dropping.get(url) is asyncio.current_task():
            del self._dropping[url]

    async def close(self) -> None:
        tasks = [*self._tasks.values(), *self._leaving]
        self._tasks.clear()
        await stop(tasks)
        self._ctx.destroy(linger=0)

    async def _run(self, url: str, endpoint: str) -> None:
        """Subscribe, and subscribe again whenever the connection is dropped: ZMQ reconnects by
        itself after a network error, but not after a protocol error such as a message over
        ``max_message_bytes`` (libzmq ends that session for good)."""
        while True:
            await self._subscription(url, endpoint)
            self._metrics.resubscribes.inc()
            log.warning("KV event connection dropped; subscribing again", extra={"upstream": url})
            # The new socket's connect is asynchronous (ZMQ retries it): this pause only spaces out
            # re-subscriptions to a publisher that keeps breaking the protocol.
            await asyncio.sleep(RESUBSCRIBE_AFTER)

    async def _subscription(self, url: str, endpoint: str) -> None:
        """Apply batches until the connection drops (the socket's monitor says so)."""
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        # Bounded by design: a peer sending a larger message is disconnected (then ``_run`` subscribes
        # again; the sequence gap makes the index forget that replica's view), and at most RCVHWM
        # messages wait while the loop is busy (beyond that the publisher drops: a gap again).
        sock.setsockopt(zmq.MAXMSGSIZE, self._max_message_bytes)
        sock.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE)
        sock.setsockopt(zmq.SUBSCRIBE, self._topic)
        monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        sock.connect(endpoint)
        log.info("subscribed to KV events", extra={"upstream": url, "endpoint": endpoint})
        poller = zmq.asyncio.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        try:
            while True:
                ready = dict(await poller.poll())
                if sock in ready:
                    await self._take(url, await sock.recv_multipart())
                elif monitor in ready:
                    return
        finally:
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
            monitor.close(linger=0)
            sock.close(linger=0)

    async def _take(self, url: str, frames: list[bytes]) -> None:
        """Decode and apply a message ``HASHES_PER_STEP`` block hashes at a time, and drop a view on
        a resync as many at a time, the loop serving others between steps (this replica's next
        message waits: its order holds). Only the message's msgpack parse (C, about 20 ms a MiB) is
        one step whatever its size."""
        applied = 0
        try:
            for batch in decode_parts(frames, HASHES_PER_STEP):
                if applied:
                    await asyncio.sleep(0)
                # (A resync drops the replica's whole view: in steps too.)
                await _paced(self.index.applying(url, batch, time.monotonic(), time.time(), HASHES_PER_STEP))
                applied += 1
                self._metrics.batch(batch, self.index.replicas[url].lag)
        except Exception as exc:  # one message must not end the replica's subscription
            if applied:  # its first parts were applied, the rest is lost: a gap, its view dropped in steps
                await _paced(self.index.abandoning(url, HASHES_PER_STEP))
            self._metrics.malformed.inc()
            log.warning("malformed KV event batch", extra={"upstream": url, "error": repr(exc)})


async def _paced(steps: Iterator[None]) -> None:
    """Run ``steps`` (an index operation's generator), letting the event loop run at each pause."""
    for _ in steps:
        await asyncio.sleep(0)
