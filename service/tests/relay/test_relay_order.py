"""The relay's two paths keep the bytes in order: chunks relayed from ``data_received`` (the fast
path) and chunks the fast path declines while the client's socket is paused (the relay coroutine's
path, waiting for the reader), then the fast path again once nothing is buffered. A stream's first
chunk takes the fast path too, with the response's head in the same write.

A real upstream (an asyncio server releasing one chunk at a time), the gateway's own pool and
``attempt``, and a real uvicorn response cycle whose transport records what the client would get.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from inferstack.exchange import Exchange, Responder
from inferstack.metrics.gateway import GatewayMetrics
from inferstack.relay.relay import relay_stream
from inferstack.relay.sse import DONE
from inferstack.upstream.client import Pool, Reply, attempt
from inferstack.upstream.endpoint import Endpoint

from ..waiting import until

EVENTS = [b'data: {"choices":[{"index":0,"delta":{"content":"w%d "}}]}\n\n' % i for i in range(6)]


class Recording:
    """The client's side of the socket: what was written, in order (a transport, for uvicorn)."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def body(self) -> bytes:
        """The response body, chunked framing taken off; it must have ended."""
        body, ended = self._unframed()
        assert ended, bytes(self.written)
        return body

    def body_so_far(self) -> bytes:
        """The body written so far, chunked framing taken off; it must not have ended."""
        body, ended = self._unframed()
        assert not ended, bytes(self.written)
        return body

    def _unframed(self) -> tuple[bytes, bool]:
        data = bytes(self.written).split(b"\r\n\r\n", 1)[1]
        out = bytearray()
        while data:
            size, _, data = data.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                return bytes(out), True
            out += data[:n]
            data = data[n + 2 :]
        return bytes(out), False


ABORT = None
"""In a script: drop the connection mid-body (no end of the chunked body)."""
END = b""
"""In a script: end the body (the chunked terminator) and close."""


async def attempt_at(pool: Pool, port: int, ex: Exchange) -> Reply:
    """The attempt against the scripted upstream on ``port``."""
    by = asyncio.get_running_loop().time() + 5
    return await attempt(pool, Endpoint(f"http://127.0.0.1:{port}"), "/v1/chat/completions", ex, by, max_bytes=1 << 20)


@contextlib.asynccontextmanager
async def scripted_upstream(
    script: asyncio.Queue[bytes | None], writers: list[asyncio.StreamWriter] | None = None
) -> AsyncIterator[int]:
    """An SSE upstream on loopback (its port) that sends each chunk put on ``script`` (``END``,
    ``ABORT``); each connection's writer is added to ``writers`` once the answer's head is sent."""

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.startswith(b"content-length"))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        if writers is not None:
            writers.append(writer)
        while (chunk := await script.get()) != END:
            if chunk is ABORT:
                writer.transport.abort()
                return
            writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def response_cycle(client: Recording, flow: FlowControl) -> tuple[RequestResponseCycle, Exchange]:
    """uvicorn's response cycle writing to ``client``, and a streaming chat exchange for it."""
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    log = logging.getLogger("test")
    cycle = RequestResponseCycle(
        scope,  # type: ignore[arg-type]
        client,  # type: ignore[arg-type]
        flow,
        log,
        log,
        False,
        [],
        asyncio.Event(),
        False,
        True,
        lambda: None,
    )
    ex = Exchange(request_id="r", upstream_id="u", endpoint="chat", started=time.perf_counter(), model="m", stream=True)
    ex.body, ex.deadline = b"{}", time.monotonic() + 30
    return cycle, ex


async def test_chunks_declined_while_the_client_is_paused_keep_their_place() -> None:
    release: asyncio.Queue[bytes | None] = asyncio.Queue()
    pool = Pool(connect_timeout=2)
    client = Recording()
    flow = FlowControl(client)  # type: ignore[arg-type]
    cycle, ex = response_cycle(client, flow)
    async with scripted_upstream(release) as port:
        try:
            release.put_nowait(EVENTS[0])
            reply = await attempt_at(pool, port, ex)
            relay = asyncio.create_task(relay_stream(reply, ex, Responder(cycle.send), GatewayMetrics(), 5.0, 5.0))  # type: ignore[arg-type]

            def sent(n: int) -> bool:
                return EVENTS[n] in client.written

            await until(lambda: sent(0), "the first chunk (with the head)")
            release.put_nowait(EVENTS[1])
            await until(lambda: sent(1), "a chunk on the fast path")
            flow.pause_writing()  # the client stops reading: the fast path declines from here
            release.put_nowait(EVENTS[2])
            # The coroutine holds chunk 2 (counted, waiting for the reader); 3 and 4 wait in the connection.
            await until(lambda: ex.texts_sent == 3, "the declined chunk to be held")
            release.put_nowait(EVENTS[3])
            release.put_nowait(EVENTS[4])
            await until(lambda: reply.response.buffered and release.empty(), "the chunks after it to be held")
            assert not any(sent(n) for n in (2, 3, 4))
            flow.resume_writing()
            await until(lambda: sent(4), "the declined chunks, once the client reads again")
            release.put_nowait(EVENTS[5])
            await until(lambda: sent(5), "the fast path again")
            release.put_nowait(DONE)
            release.put_nowait(END)
            assert await asyncio.wait_for(relay, 5) is None
        finally:
            await pool.close()
    assert client.body() == b"".join(EVENTS) + DONE
    assert ex.texts_sent == len(EVENTS) and cycle.response_complete


class TaskNoting(Recording):
    """Also notes, per write, the task that made it (None: an I/O callback such as ``data_received``)."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: list[asyncio.Task[object] | None] = []

    def write(self, data: bytes) -> None:
        super().write(data)
        self.writers.append(asyncio.current_task())


async def test_a_streams_first_chunk_goes_out_with_the_head_from_data_received() -> None:
    release: asyncio.Queue[bytes | None] = asyncio.Queue()
    pool = Pool(connect_timeout=2)
    client = TaskNoting()
    cycle, ex = response_cycle(client, FlowControl(client))  # type: ignore[arg-type]
    async with scripted_upstream(release) as port:
        try:
            # The attempt ends at the headers: no body byte has been sent yet.
            reply = await attempt_at(pool, port, ex)
            assert reply.streaming and reply.first == b""
            relay = asyncio.create_task(relay_stream(reply, ex, Responder(cycle.send), GatewayMetrics(), 5.0, 5.0))  # type: ignore[arg-type]
            await until(lambda: reply.response.following, "the relay to follow the response")
            assert not client.written  # nothing reaches the client before the first byte (a failure is retried)
            release.put_nowait(EVENTS[0])
            await until(lambda: bool(client.written), "the first chunk")
            assert client.written.startswith(b"HTTP/1.1 200 ") and client.written.endswith(EVENTS[0] + b"\r\n")
            assert client.writers == [None]  # head and chunk in one write, made in data_received, not by a task
            assert ex.ttft is not None
            release.put_nowait(DONE)
            release.put_nowait(END)
            assert await asyncio.wait_for(relay, 5) is None
        finally:
            await pool.close()
    assert client.body() == EVENTS[0] + DONE
