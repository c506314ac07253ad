"""The control plane's aiohttp session (health checks, discovery, metrics scrapes, /tokenize) against a
real aiohttp server on loopback: what it sends, what it keeps, and what it hands back as it came."""

from __future__ import annotations

import gzip

from aiohttp import web

from inferstack.config import Settings
from inferstack.upstream.client import create_session


async def test_the_control_session_keeps_no_cookie_sends_no_agent_nor_encoding_and_reads_bodies_as_sent() -> None:
    seen: list[dict[str, str]] = []
    packed = gzip.compress(b'{"ok":true}')

    async def engine(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        headers = {"content-encoding": "gzip", "content-type": "application/json"}
        resp = web.Response(body=packed, status=500, headers=headers)
        resp.set_cookie("engine", "secret")  # must never ride along on the next request
        return resp

    app = web.Application()
    app.router.add_get("/x", engine)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "localhost", 0)  # a host name: aiohttp's cookie jar ignores IP addresses
    await site.start()
    port = runner.addresses[0][1]
    session = create_session(Settings(upstreams=[]))
    try:
        for _ in range(2):
            async with session.get(f"http://localhost:{port}/x") as resp:
                assert resp.status == 500  # an error status is the caller's to read, not an exception
                assert await resp.read() == packed  # as sent: not decompressed
    finally:
        await session.close()
        await runner.cleanup()
    assert len(seen) == 2
    assert "Cookie" not in seen[1]
    assert all("User-Agent" not in h and "Accept-Encoding" not in h for h in seen)
