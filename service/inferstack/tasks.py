"""The lifespan's background tasks: each runs until cancelled, and one that ends any other way is a
gateway that no longer works as configured (discovery frozen on an old set of engines, limits on
stale keys), not a detail for the GC to mention later.

``BackgroundTasks`` starts them (or watches tasks started elsewhere); when one ends with an error or
returns, it logs the error at once, counts ``inferstack_background_task_failures_total{task}`` and
keeps the reason in ``ended``, which fails ``/healthz`` (so the kubelet restarts the container: a
fresh process rebuilds every task) and ``/readyz`` (so traffic leaves it meanwhile). Cancelling is
the normal end: ``close`` stops every task.

``stop`` is how every resource's ``close`` ends its tasks: a cancel can be lost, so waiting for a
cancelled task has a deadline and a task still running is cancelled again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

from prometheus_client import Counter

log = logging.getLogger("inferstack.tasks")

STOP_WITHIN = 2.0
"""Seconds ``stop`` waits for cancelled tasks; it leaves (and logs) any still running after that, so a
shutdown ends well inside the pod's termination grace period after the drain."""
RECANCEL_AFTER = 0.25
"""A task still running this long after its cancel is cancelled again."""


async def stop(tasks: Iterable[asyncio.Task[Any]], *, within: float = STOP_WITHIN) -> list[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait for them to end, ``within`` seconds at most; return those still running.

    Why not ``cancel`` and ``gather``: a cancel can be lost. On Python 3.11, a cancel that lands as
    one of two nested ``asyncio.timeout`` expires can come out as a ``TimeoutError``, and a loop that
    survives timeouts goes on. Against a peer that never answers (bench/lost_cancel.py): redis-py's
    connect under the Redis health check, 7 cancels in 1,600; aiohttp under the cluster's health
    check, 23 in 1,000. A CI run hung at shutdown in the lifespan's ``gather``. A second cancel lands
    at another moment."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_AFTER, left))
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: an error while stopping is no one's to report
    for task in pending:
        # The loop's close waits for it without a deadline; the gateway process's exit has one (server.exit_after).
        log.error("task %r still runs %.1f s after it was cancelled; left to the loop's close", task.get_name(), within)
    return list(pending)


class BackgroundTasks:
    def __init__(self, failures: Counter) -> None:
        self._failures = failures
        self._tasks: list[asyncio.Task[Any]] = []
        self._closing = False
        self.ended: dict[str, str] = {}
        """Task name -> why it ended, for tasks that should still be running."""

    def start(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self.watch(task)
        return task

    def watch(self, task: asyncio.Task[Any]) -> None:
        """Report ``task`` if it ends before ``close`` (it is cancelled there too)."""
        self._tasks.append(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        if self._closing or task.cancelled():
            return
        name = task.get_name()
        exc = task.exception()
        self.ended[name] = f"{type(exc).__name__}: {exc}" if exc is not None else "returned"
        self._failures.labels(name).inc()
        log.error("background task %r ended: %s", name, self.ended[name], exc_info=exc)

    async def close(self) -> None:
        self._closing = True
        await stop(self._tasks)
