"""The OpenAI endpoint under an ASGI server other than uvicorn's httptools protocol: the endpoint
watches for the disconnect with a task on ``receive``, and a server that fails is a 500 in OpenAI's
shape. The test plays the server (its ``receive`` and ``send``); the gateway behind is real."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest

from inferstack.api.openai import OpenAIEndpoint
from inferstack.types import Message
from inferstack_fake_engine import Behaviour, EngineConfig, running_engine

from ..gateway_harness import running_gateway
from ..test_relay_fake_engine import CHAT, recorded
from ..waiting import until


class Server:
    """One request's ASGI channel: what the endpoint sent, and its ``receive`` calls still waiting."""

    def __init__(self, body: bytes, gone_after_answer: bool = False) -> None:
        self.gone_after_answer = gone_after_answer
        self.incoming: asyncio.Queue[Message] = asyncio.Queue()
        self.incoming.put_nowait({"type": "http.request", "body": body, "more_body": False})
        self.sent: list[Message] = []
        self.waiting = 0

    async def receive(self) -> Message:
        self.waiting += 1
        try:
            return await self.incoming.get()
        finally:
            self.waiting -= 1

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        last = message["type"] == "http.response.body" and not message.get("more_body", False)
        if last and self.gone_after_answer:
            # As the ASGI spec allows: once the response is sent, ``receive`` says the client is gone.
            self.incoming.put_nowait({"type": "http.disconnect"})
        # A server's send yields to the loop, maybe more than once (a write, a drain): the disconnect
        # above then arrives while the endpoint still finishes the request (its accounting, say).
        for _ in range(3):
            await asyncio.sleep(0)

    def answer(self) -> tuple[int, dict[str, Any]]:
        start, *bodies = self.sent
        return start["status"], orjson.loads(b"".join(m.get("body", b"") for m in bodies))


def scope(headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers or []}


@asynccontextmanager
async def endpoint(behaviour: Behaviour | None = None) -> AsyncIterator[tuple[OpenAIEndpoint, str]]:
    async with (
        running_engine(EngineConfig(behaviour=behaviour or Behaviour())) as engine,
        running_gateway([engine]) as (_, app),
    ):
        yield app.state.gateway.endpoints["chat"], engine


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [vars(r)["access"] for r in caplog.records if r.name == "inferstack.access"]


async def test_an_answer_leaves_no_receive_waiting() -> None:
    server = Server(orjson.dumps(CHAT))
    async with endpoint() as (chat, _):
        await chat(scope(), server.receive, server.send)
    status, answer = server.answer()
    assert status == 200 and answer["choices"]
    # The disconnect watch on ``receive`` ended with the request (no task left reading the channel).
    await until(lambda: server.waiting == 0, "the watch on receive to end")


async def test_a_disconnect_reported_once_the_answer_is_sent_leaves_it_a_200(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="inferstack.access")
    server = Server(orjson.dumps(CHAT), gone_after_answer=True)
    async with endpoint() as (chat, _):
        await chat(scope(), server.receive, server.send)
    assert server.answer()[0] == 200
    # Not a client that left mid-request: no 499, and its accounting was not cancelled.
    (line,) = access_lines(caplog)
    assert (line["status"], line["error"]) == (200, None)


async def test_a_disconnect_during_the_request_cancels_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="inferstack.access")
    server = Server(orjson.dumps(CHAT))
    async with endpoint(Behaviour(hang=True)) as (chat, engine), asyncio.timeout(10):
        handling = asyncio.create_task(chat(scope(), server.receive, server.send))
        async with httpx.AsyncClient() as client:

            async def reached() -> bool:
                return bool(await recorded(client, engine))

            await until(reached, "the request at the engine")
        server.incoming.put_nowait({"type": "http.disconnect"})
        await handling  # returns: the cancel is the client's, not the server's
    assert server.sent == []
    (line,) = access_lines(caplog)
    assert (line["status"], line["error"]) == (499, "client_disconnect")


async def test_a_server_that_fails_is_a_500_that_names_no_internals(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="inferstack.access")

    async def broken() -> Message:
        raise RuntimeError("the server's own failure")

    server = Server(b"")
    async with endpoint() as (chat, _):
        await chat(scope([(b"x-request-id", b"req-9")]), broken, server.send)
    status, answer = server.answer()
    assert status == 500
    assert answer == {
        "error": {
            "message": "The gateway failed to process the request.",
            "type": "internal_error",
            "param": None,
            "code": None,
        }
    }
    (failed,) = [r for r in caplog.records if r.name == "inferstack.api"]
    assert (failed.levelno, failed.getMessage(), vars(failed)["request_id"]) == (
        logging.ERROR,
        "request failed",
        "req-9",
    )
    assert failed.exc_info is not None and "the server's own failure" in str(failed.exc_info[1])
    (line,) = access_lines(caplog)
    assert (line["status"], line["error"], line["request_id"]) == (500, "internal_error", "req-9")
