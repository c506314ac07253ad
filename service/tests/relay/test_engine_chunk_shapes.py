"""A stream being assembled for the response cache reads the engine's chunks; chunks of the wrong shape
(a buggy engine, a proxy in between) must not break the stream the client gets: the client gets the
events as the engine sent them, and the answer is simply not cached."""

from __future__ import annotations

import httpx
import orjson
from aiohttp import web

from ..gateway_harness import running_gateway
from ..test_relay_fake_engine import scripted_engine

SHAPES = {
    "choices a string": {"choices": "abc"},
    "a choice a number": {"choices": [1]},
    "an index a list": {"choices": [{"index": [0], "delta": {"content": "x"}}]},
    "indexes of two types": {"choices": [{"index": 0, "delta": {"content": "x"}}, {"index": "1", "delta": {}}]},
    "a delta a string": {"choices": [{"index": 0, "delta": "x"}]},
    "content a number": {"choices": [{"index": 0, "delta": {"content": 5}}]},
}


async def test_chunks_of_the_wrong_shape_reach_the_client_and_are_not_cached() -> None:
    shape: dict[str, object] = {}

    async def chat(request: web.Request) -> web.StreamResponse:
        """One chunk of ``shape``, a finish, and [DONE]."""
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "fake-model"}
        finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        for chunk in (shape, finish):
            await resp.write(b"data: " + orjson.dumps({**head, **chunk}) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async with (
        scripted_engine(chat) as upstream,
        running_gateway([upstream]) as (url, _),
        httpx.AsyncClient(timeout=10) as client,
    ):
        for name, chunk in SHAPES.items():
            shape.clear()
            shape.update(chunk)
            body = {"model": "fake-model", "messages": [{"role": "user", "content": name}], "stream": True}
            for attempt in ("miss", "again"):
                resp = await client.post(url + "/v1/chat/completions", json={**body, "temperature": 0})
                assert resp.status_code == 200, (name, attempt)
                assert resp.headers.get("x-inferstack-cache") != "hit", (name, attempt)
                events = [e for e in resp.text.split("\n\n") if e]
                assert events[-1] == "data: [DONE]", (name, attempt, resp.text)
                first = orjson.loads(events[0][len("data: ") :])
                assert first.get("choices") == chunk["choices"], (name, attempt, resp.text)
