"""``relay_whole``: a non-stream answer passes through byte for byte and is counted from its usage; an
engine's error that is not in OpenAI's shape gets an OpenAI body, with its content type.

A real upstream on loopback answering with a fixed status and body, the gateway's own pool and
``attempt``, and uvicorn's response cycle writing to a recording transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import orjson
from uvicorn.protocols.http.flow_control import FlowControl

from inferstack.exchange import Exchange, Responder
from inferstack.metrics.gateway import GatewayMetrics
from inferstack.relay.relay import relay_whole
from inferstack.upstream.client import Pool, attempt
from inferstack.upstream.endpoint import Endpoint

from .test_relay_order import Recording, response_cycle


@contextlib.asynccontextmanager
async def answering_upstream(status: int, content_type: bytes, body: bytes) -> AsyncIterator[str]:
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.startswith(b"content-length"))
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: %b\r\ncontent-length: %d\r\n\r\n%b"
            % (status, content_type, len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def relayed(status: int, content_type: bytes, body: bytes) -> tuple[Recording, Exchange, GatewayMetrics]:
    client = Recording()
    cycle, ex = response_cycle(client, FlowControl(client))  # type: ignore[arg-type]
    ex.stream, ex.deadline = False, time.monotonic() + 30
    metrics = GatewayMetrics()
    pool = Pool(connect_timeout=2)
    try:
        async with answering_upstream(status, content_type, body) as url:
            by = asyncio.get_running_loop().time() + 5
            reply = await attempt(pool, Endpoint(url), "/v1/chat/completions", ex, by, max_bytes=1 << 20)
            await relay_whole(reply, ex, Responder(cycle.send), metrics)  # type: ignore[arg-type]
            reply.close()
    finally:
        await pool.close()
    return client, ex, metrics


def answer_of(client: Recording) -> tuple[bytes, bytes]:
    head, _, body = bytes(client.written).partition(b"\r\n\r\n")
    return head, body


async def test_a_200_passes_through_unchanged_and_is_counted_from_its_usage() -> None:
    body = b'{"choices":[] ,"usage":{"prompt_tokens":4,"completion_tokens":6}}'
    client, ex, metrics = await relayed(200, b"application/json", body)
    head, sent = answer_of(client)
    assert head.startswith(b"HTTP/1.1 200 ") and sent == body
    assert (ex.status, ex.whole, ex.prompt_tokens, ex.completion_tokens) == (200, body, 4, 6)
    labels = {"model": "m", "tenant": "anonymous"}
    assert metrics.registry.get_sample_value("inferstack_prompt_tokens_total", labels) == 4
    assert metrics.registry.get_sample_value("inferstack_completion_tokens_total", labels) == 6


async def test_an_engine_error_not_in_openais_shape_gets_an_openai_body_and_its_content_type() -> None:
    client, ex, _ = await relayed(404, b"text/plain", b"Not Found")
    head, sent = answer_of(client)
    assert head.startswith(b"HTTP/1.1 404 ")
    assert b"content-type: application/json" in head and b"text/plain" not in head
    assert orjson.loads(sent)["error"]["message"] == "Not Found"
    assert (ex.status, ex.whole, ex.usage) == (404, None, None)


async def test_an_engine_error_in_openais_shape_and_vocabulary_passes_through_as_it_is() -> None:
    error = b'{"error":{"message":"too long","type":"invalid_request_error","param":"max_tokens","code":null}}'
    client, ex, _ = await relayed(400, b"application/json", error)
    head, sent = answer_of(client)
    assert head.startswith(b"HTTP/1.1 400 ") and sent == error
    assert ex.status == 400 and ex.whole is None


async def test_vllms_own_error_vocabulary_becomes_openais() -> None:
    # vLLM 0.32's errors: the exception's class name as the type, the HTTP status (a number) as the code,
    # where OpenAI's schema has its type names and a string or null (strict clients decode it as a string).
    error = b'{"error":{"message":"too long","type":"BadRequestError","param":null,"code":400}}'
    client, ex, _ = await relayed(400, b"application/json", error)
    head, sent = answer_of(client)
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head
    assert orjson.loads(sent) == {
        "error": {"message": "too long", "type": "invalid_request_error", "param": None, "code": None}
    }
    missing = b'{"error":{"message":"The model `x` does not exist.","type":"NotFoundError","param":"model","code":404}}'
    client, ex, _ = await relayed(404, b"application/json", missing)
    head, sent = answer_of(client)
    assert head.startswith(b"HTTP/1.1 404 ")
    assert orjson.loads(sent) == {
        "error": {
            "message": "The model `x` does not exist.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "not_found",
        }
    }
    assert ex.status == 404 and ex.whole is None
