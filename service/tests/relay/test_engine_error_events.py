"""An engine's own error events mid-stream reach the client in OpenAI's vocabulary.

vLLM validates some parameters only once its stream has started (a ``logit_bias`` token outside the
vocabulary, found by the schema fuzzer against the real engine): the status line is already 200, so
it sends ``data: {"error": {"message": ..., "type": "BadRequestError", "param": ..., "code": 400}}``
and the end. The gateway rewrites that event as it rewrites a whole error answer (OpenAI's type for
the code, the code a string or null) however the engine's writes cut the stream, and the access line
says the stream ended in the engine's error.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
import orjson
import pytest
from aiohttp import web

from ..gateway_harness import running_gateway
from ..test_relay_fake_engine import scripted_engine

TEXT = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"fake-model",'
    b'"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
)
VLLM_ERROR = (
    b'data: {"error": {"message": "token_id(s) [50256] in logit_bias contain out-of-vocab token ids.",'
    b' "type": "BadRequestError", "param": "logit_bias", "code": 400}}\n\n'
)
DONE = b"data: [DONE]\n\n"
# How the engine's writes may cut the same stream (each write may arrive as its own read).
WRITES = {
    "error and end in one write": [TEXT, VLLM_ERROR + DONE],
    "error alone, then the end": [TEXT, VLLM_ERROR, DONE],
    "text and error in one write": [TEXT + VLLM_ERROR, DONE],
}


@pytest.mark.parametrize("shape", list(WRITES))
async def test_vllms_error_event_reaches_the_client_in_openais_vocabulary(
    shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="inferstack.access")
    writes = WRITES[shape]
    # The engine writes the next part only once the client holds the last one: each part is its own
    # read in the gateway (the fast path's case for a part of whole events), not one coalesced read.
    relayed = [asyncio.Event() for _ in writes]

    async def chat(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for data, sent in zip(writes, relayed, strict=True):
            await resp.write(data)
            await sent.wait()
        await resp.write_eof()
        return resp

    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    received = b""
    async with (
        scripted_engine(chat) as upstream,
        running_gateway([upstream]) as (url, _),
        httpx.AsyncClient(timeout=10) as client,
        client.stream("POST", url + "/v1/chat/completions", json=body) as resp,
    ):
        assert resp.status_code == 200
        parts = resp.aiter_raw()
        ends = 0  # events the engine has written so far, each ending in a blank line
        for data, sent in zip(writes, relayed, strict=True):
            ends += data.count(b"\n\n")
            while received.count(b"\n\n") < ends:
                received += await anext(parts)
            sent.set()
        async for part in parts:  # the end of the chunked body
            received += part
    events = [e + b"\n\n" for e in received.split(b"\n\n") if e]
    assert events[0] == TEXT  # text events pass as the engine sent them
    assert events[-1] == DONE and len(events) == 3, received
    assert orjson.loads(events[1][len(b"data: ") :]) == {
        "error": {
            "message": "token_id(s) [50256] in logit_bias contain out-of-vocab token ids.",
            "type": "invalid_request_error",
            "param": "logit_bias",
            "code": None,
        }
    }
    lines = [vars(r)["access"] for r in caplog.records if r.name == "inferstack.access"]
    assert [(line["status"], line["error"]) for line in lines] == [(200, "stream_engine_error")]


async def test_an_engine_failure_event_becomes_the_gateways_upstream_error() -> None:
    failure = b'data: {"error": {"message": "boom", "type": "InternalServerError", "param": null, "code": 500}}\n\n'

    async def chat(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(TEXT)
        await resp.write(failure + DONE)
        await resp.write_eof()
        return resp

    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with (
        scripted_engine(chat) as upstream,
        running_gateway([upstream]) as (url, _),
        httpx.AsyncClient(timeout=10) as client,
    ):
        resp = await client.post(url + "/v1/chat/completions", json=body)
    events = [e for e in resp.text.split("\n\n") if e]
    assert orjson.loads(events[1][len("data: ") :]) == {
        "error": {
            "message": "The upstream replica failed: boom",
            "type": "upstream_error",
            "param": None,
            "code": "bad_gateway",
        }
    }
