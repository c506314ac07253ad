"""Running the gateway under uvicorn, with graceful drain on SIGTERM.

Kubernetes sends SIGTERM and, at about the same time, removes the pod from Service endpoints; the
two race. So on SIGTERM: ``/readyz`` fails at once, new requests are still served for
``drain_grace`` seconds (while load balancers catch up), then the listener closes and in-flight
requests (streams included) get up to ``drain_deadline`` seconds to finish (0: none); then exit 0.
A second SIGTERM or SIGINT stops at once, without waiting for in-flight requests.

Each of those has a deadline the process keeps even when a task does not: the lifespan's closes
leave a task that outlives their cancels (``tasks.stop``: a cancel landing as a nested timeout expires
can be lost), a forced stop skips those closes, and ``asyncio.run`` then cancels every task left and
waits for them without a deadline; one such task would keep the process alive until the kubelet's
SIGKILL. A watchdog thread ends it with exit code 1 and a log line: ``FORCED_EXIT_WITHIN`` after the
second signal, ``drain_deadline + SHUTDOWN_MARGIN`` after shutdown starts.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import signal
import socket
import threading
from types import FrameType

import uvicorn
from fastapi import FastAPI

from .accesslog import configure_logging
from .app import create_app
from .config import Settings
from .listener import guarded_protocol

log = logging.getLogger("inferstack.server")
GC_GEN0_THRESHOLD = 20_000
FORCED_EXIT_WITHIN = 3.0
"""Seconds from the second signal to the process's end, whatever its tasks do."""
SHUTDOWN_MARGIN = 10.0
"""Seconds past ``drain_deadline``, from the start of shutdown, for the lifespan's closes and the loop's end."""


def exit_after(seconds: float, why: str) -> None:
    """End the process in ``seconds`` if it is still running then (a daemon thread: a process that
    exits first is not held by it)."""

    def say() -> None:
        log.error("exiting: shutdown did not end in time", extra={"after_s": seconds, "stage": why})
        logging.shutdown()  # the access lines still batched

    def expire() -> None:
        # The log line in a thread of its own, given a second: a write blocked on a full stderr pipe
        # (the handler's lock held) must not keep the process alive either.
        saying = threading.Thread(target=say, daemon=True)
        saying.start()
        saying.join(1.0)
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, grace: float) -> None:
        super().__init__(config)
        self._app = app
        self._grace = grace
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining:
            # uvicorn forces an exit only on a second SIGINT; a second SIGTERM must too.
            self.should_exit = self.force_exit = True
            exit_after(FORCED_EXIT_WITHIN, "second signal")
            return
        if sig == signal.SIGINT:
            self._draining = True
            super().handle_exit(sig, frame)
            return
        self._draining = True
        gateway = getattr(self._app.state, "gateway", None)
        if gateway is not None:
            gateway.draining = True
        log.info("draining", extra={"grace_s": self._grace})
        asyncio.get_running_loop().call_later(self._grace, lambda: setattr(self, "should_exit", True))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # What uvicorn waits for the connections (``drain_deadline``, rounded up), then the margin.
        exit_after((self.config.timeout_graceful_shutdown or 0) + SHUTDOWN_MARGIN, "shutdown")
        await super().shutdown(sockets)


def serve(settings: Settings | None = None) -> None:
    settings = settings if settings is not None else Settings()
    configure_logging(settings.log_level, settings.access_log_flush_interval)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=guarded_protocol(settings.listener, settings.admin_port),
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=settings.log_level,
        # 0 means no wait (uvicorn waits forever on None, and gives up at once on 0).
        timeout_graceful_shutdown=math.ceil(settings.drain_deadline),
        timeout_keep_alive=max(1, round(settings.listener.keepalive_timeout)),
        backlog=2048,
        # The gateway never reads the client address; X-Forwarded-* rewriting would be per-request cost.
        proxy_headers=False,
    )
    # Everything built so far lives as long as the process: keep it out of the collector's scans, and
    # collect the young generation less often. Streams allocate per token; the default threshold
    # (700) runs a collection every few hundred events, each a pause that shows up as tail latency.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
    sockets = [listen(settings.host, settings.port), listen(settings.host, settings.admin_port)]
    DrainingServer(config, app, settings.drain_grace).run(sockets=sockets)


def listen(host: str, port: int) -> socket.socket:
    """A bound socket for uvicorn: the public and the admin listener share one server and one app,
    which tells them apart by the local port (``GatewayApp``)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock
