"""Running a fake engine: in-process on an ephemeral port (tests), or as a process (the CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from .app import create_app
from .config import EngineConfig


@contextlib.asynccontextmanager
async def running_engine(
    config: EngineConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[str]:
    """Serve a fake engine on this event loop; yield its base URL (``http://127.0.0.1:<port>``).

    To change a running engine, mutate ``config.behaviour`` or ``POST /_fake/config``.
    """
    runner = _runner(create_app(config))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()


async def serve(config: EngineConfig, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_engine(config, host, port) as url:
        print(f"fake engine serving {', '.join(config.models)} at {url}", flush=True)
        await stop.wait()


def _runner(app: web.Application) -> web.AppRunner:
    # handler_cancellation: a client that goes away cancels its handler, so a hung or streaming
    # request frees its slot (and its simulated sequence) at once. No access log: it costs CPU.
    return web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
