"""A stream being assembled for the response cache reads the engine's chunks; chunks of the wrong shape
(a buggy engine, a proxy in between) must not break the stream the client gets: the client gets the
events as the engine sent them, and the answer is simply not cached."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from aiohttp import web

from ..gateway_harness import running_gateway

SHAPES = {
    "choices a string": {"choices": "abc"},
    "a choice a number": {"choices": [1]},
    "an index a list": {"choices": [{"index": [0], "delta": {"content": "x"}}]},
    "indexes of two types": {"choices": [{"index": 0, "delta": {"content": "x"}}, {"index": "1", "delta": {}}]},
    "a delta a string": {"choices": [{"index": 0, "delta": "x"}]},
    "content a number": {"choices": [{"index": 0, "delta": {"content": 5}}]},
}


@pytest.fixture
async def engine() -> AsyncIterator[tuple[dict[str, object], str]]:
    """Answers every chat stream with one chunk of ``state["chunk"]``'s shape, a finish, and [DONE]."""
    state: dict[str, object] = {}

    async def health(_: web.Request) -> web.Response:
        return web.Response()

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "m"}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        finish = {
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}, {"index": "1", "finish_reason": "stop"}]
        }
        for chunk in (state["chunk"], finish):
            await resp.write(b"data: " + orjson.dumps({**head, **chunk}) + b"\n\n")  # type: ignore[dict-item]
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield state, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_chunks_of_the_wrong_shape_reach_the_client_and_are_not_cached(
    engine: tuple[dict[str, object], str],
) -> None:
    state, upstream = engine
    async with running_gateway([upstream]) as (url, _), httpx.AsyncClient(timeout=10) as client:
        for name, chunk in SHAPES.items():
            state["chunk"] = chunk
            body = {"model": "m", "messages": [{"role": "user", "content": name}], "stream": True, "temperature": 0}
            for attempt in ("miss", "again"):
                resp = await client.post(url + "/v1/chat/completions", json=body)
                assert resp.status_code == 200, (name, attempt)
                assert resp.headers.get("x-inferstack-cache") != "hit", (name, attempt)
                events = [e for e in resp.text.split("\n\n") if e]
                assert events[-1] == "data: [DONE]", (name, attempt, resp.text)
                first = orjson.loads(events[0][len("data: ") :])
                assert first.get("choices") == chunk["choices"], (name, attempt, resp.text)
