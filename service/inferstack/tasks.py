"""The lifespan's background tasks: each runs until cancelled, and one that ends any other way is a
gateway that no longer works as configured (discovery frozen on an old set of engines, limits on
stale keys), not a detail for the GC to mention later.

``BackgroundTasks`` starts them (or watches tasks started elsewhere); when one ends with an error or
returns, it logs the error at once, counts ``inferstack_background_task_failures_total{task}`` and
keeps the reason in ``ended``, which fails ``/healthz`` (so the kubelet restarts the container: a
fresh process rebuilds every task) and ``/readyz`` (so traffic leaves it meanwhile). Cancelling is
the normal end: ``close`` cancels every task and waits for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from prometheus_client import Counter

log = logging.getLogger("inferstack.tasks")


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
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
