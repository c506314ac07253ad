"""Run a real gateway (uvicorn, real sockets) inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn

from inferstack.app import create_app
from inferstack.config import Settings
from inferstack.server import listen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayURL(str):
    """The public base URL; ``.admin`` is the admin listener's (``/metrics``, ``/admin/*``)."""

    admin: str


@contextlib.asynccontextmanager
async def running_gateway(
    upstreams: list[str], *, wait_ready: bool = True, **overrides: Any
) -> AsyncIterator[tuple[GatewayURL, Any]]:
    """Yield (base URL, app). ``overrides`` are Settings fields; health checks run every 0.2 s."""
    overrides.setdefault("health", {"interval": 0.2, "timeout": 1.0})
    overrides.setdefault("auth_enabled", False)
    settings = Settings(host="127.0.0.1", port=free_port(), admin_port=free_port(), upstreams=upstreams, **overrides)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=settings.port,
        lifespan="on",
        log_config=None,
        access_log=False,
        loop="asyncio",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = False  # type: ignore[attr-defined]
    sockets = [listen("127.0.0.1", settings.port), listen("127.0.0.1", settings.admin_port)]
    task = asyncio.create_task(server.serve(sockets=sockets))
    url = GatewayURL(f"http://127.0.0.1:{settings.port}")
    url.admin = f"http://127.0.0.1:{settings.admin_port}"
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
            if wait_ready:
                async with httpx.AsyncClient() as client:
                    while (await client.get(url + "/readyz")).status_code != 200:
                        await asyncio.sleep(0.02)
        yield url, app
    finally:
        server.should_exit = True
        await task
