"""Waiting for a condition in tests: polled, always under a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def until(check: Callable[[], bool | Awaitable[bool]], what: str, within: float = 5.0) -> None:
    """Poll ``check`` (sync or async) until it is true; fail naming ``what`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        done = check()
        if inspect.isawaitable(done):
            done = await done
        if done:
            return
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)  # the polling interval: the loop ends on the condition or the deadline
