"""What ``relay_stream`` does at a stream's edges: a break after text, a silent upstream, bytes after
the last blank line, bytes after ``[DONE]``, the usage chunk, the token clock, a client that leaves.

Written against the mutants of ``relay/relay.py`` that the gateway-level tests let through
(docs/mutation.md). A real upstream on loopback (an asyncio server sending what the test scripts,
one chunk at a time), the gateway's own pool and ``attempt``, and uvicorn's response cycle writing
to a transport that records what the client would get (``test_relay_order``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import orjson
import pytest
from uvicorn.protocols.http.flow_control import FlowControl

from inferstack.exchange import ClientStalled, Exchange, Responder
from inferstack.filters import Admission
from inferstack.filters.auth import ANONYMOUS_PRINCIPAL
from inferstack.filters.replay import StreamAssembler
from inferstack.filters.tokens import estimate_prompt_tokens
from inferstack.metrics.gateway import GatewayMetrics, HistogramBatch
from inferstack.relay.relay import _TextClock, relay_stream
from inferstack.relay.sse import DONE
from inferstack.upstream.client import Pool, Reply, attempt
from inferstack.upstream.endpoint import Endpoint
from inferstack.upstream.failures import AttemptError

from ..waiting import until
from .test_relay_order import ABORT, END, EVENTS, Recording, response_cycle, scripted_upstream


class Stream:
    """One relayed stream: the upstream's script, the client's transport, the exchange and metrics."""

    def __init__(self, port: int, script: asyncio.Queue[bytes | None], writers: list[asyncio.StreamWriter]) -> None:
        self.port, self.script, self.writers = port, script, writers
        self.pool = Pool(connect_timeout=2)
        self.client = Recording()
        self.flow = FlowControl(self.client)  # type: ignore[arg-type]
        self.cycle, self.ex = response_cycle(self.client, self.flow)
        self.ex.payload = {"model": "m", "messages": [{"role": "user", "content": "Hello there"}]}
        self.metrics = GatewayMetrics()
        self.reply: Reply | None = None

    def send(self, *chunks: bytes | None) -> None:
        for chunk in chunks:
            self.script.put_nowait(chunk)

    async def answer(self) -> Reply:
        """The upstream's answer, its head in (``attempt``)."""
        loop = asyncio.get_running_loop()
        endpoint = Endpoint(f"http://127.0.0.1:{self.port}")
        self.ex.upstream = endpoint.url  # (the router's part)
        self.reply = await attempt(
            self.pool, endpoint, "/v1/chat/completions", self.ex, loop.time() + 5, max_bytes=1 << 20
        )
        return self.reply

    async def relay(self, idle: float = 5.0, client_write: float = 5.0) -> asyncio.Task[AttemptError | None]:
        reply = self.reply or await self.answer()
        out = Responder(self.cycle.send)  # type: ignore[arg-type]
        return asyncio.create_task(relay_stream(reply, self.ex, out, self.metrics, idle, client_write))

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, {"model": "m", **labels})


@contextlib.asynccontextmanager
async def stream() -> AsyncIterator[Stream]:
    script: asyncio.Queue[bytes | None] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []
    async with scripted_upstream(script, writers) as port:
        s = Stream(port, script, writers)
        try:
            yield s
        finally:
            await s.pool.close()


def error_of(body: bytes) -> dict[str, object]:
    """The error object of the error event that ends ``body`` (then ``[DONE]``)."""
    assert body.endswith(b"\n\n" + DONE), body
    event = body[: -len(DONE) - 2].rsplit(b"\n\n", 1)[-1]
    assert event.startswith(b"data: "), body
    error: dict[str, object] = orjson.loads(event[6:])["error"]
    return error


@pytest.mark.parametrize("kind", ["protocol", "timeout"])
async def test_a_stream_that_breaks_after_text_ends_with_an_error_event_and_says_why(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with stream() as s:
        s.send(EVENTS[0])
        relay = await s.relay(idle=0.3)
        await until(lambda: EVENTS[0] in s.client.written, "the first event")
        if kind == "protocol":
            s.send(ABORT)  # else the upstream falls silent: cut after idle
        with caplog.at_level(logging.WARNING, "inferstack.relay"):
            failure = await asyncio.wait_for(relay, 5)
    assert failure is not None and failure.kind == kind
    body = s.client.body()
    assert body.startswith(EVENTS[0])
    assert error_of(body)["code"] == ("bad_gateway" if kind == "protocol" else "upstream_timeout")
    assert s.cycle.response_complete
    # The access log's error field, and the operator's warning naming the request, replica and kind.
    assert s.ex.error == f"stream_{kind}"
    (record,) = [r for r in caplog.records if r.name == "inferstack.relay"]
    assert record.getMessage() == "stream broke after it started"
    assert (record.request_id, record.kind) == ("r", kind)  # type: ignore[attr-defined]
    assert record.upstream == s.ex.upstream  # type: ignore[attr-defined]


@pytest.mark.parametrize("end", ["error event", "end of the body", "bytes after the last blank line"])
async def test_a_client_that_stops_reading_before_the_last_write_is_stalled_not_waited_for(end: str) -> None:
    # Each of the stream's last writes has the client-write deadline: a client that stopped reading
    # ends the request (ClientStalled), billed for the text it was handed, instead of holding it open.
    async with stream() as s:
        s.send(EVENTS[0])
        relay = await s.relay(client_write=0.3)
        await until(lambda: EVENTS[0] in s.client.written, "the first event")
        s.flow.pause_writing()
        last: dict[str, list[bytes | None]] = {
            "error event": [ABORT],
            "end of the body": [END],
            "bytes after the last blank line": [b"data: x", END],
        }
        s.send(*last[end])
        with pytest.raises(ClientStalled):
            await asyncio.wait_for(relay, 5)
    assert s.client.body_so_far() == EVENTS[0]
    assert s.ex.usage == {"prompt_tokens": estimate_prompt_tokens("chat", s.ex.payload), "completion_tokens": 1}


async def test_a_first_byte_that_arrives_as_its_deadline_passes_reaches_no_client() -> None:
    # The first-byte deadline has passed when the relay starts (the attempt took all of it): the
    # timer fires at the loop's next turn, the first event arrives in the same turn, after it. The
    # fast path must not start the response from data_received then: the attempt failed (timeout)
    # and is retried; nothing reached the client.
    async with stream() as s:
        reply = await s.answer()
        loop = asyncio.get_running_loop()
        reply.by = loop.time() - 1
        relay = await s.relay()
        (writer,) = s.writers
        # After the relay's first step (which follows the response), in the same turn: readable at the next.
        loop.call_soon(writer.write, b"%x\r\n%b\r\n" % (len(EVENTS[0]), EVENTS[0]))
        failure = await asyncio.wait_for(relay, 5)
    assert failure is not None and failure.kind == "timeout"
    assert s.client.written == b""
    reply.close()


ROLE = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}\n\n'


@pytest.mark.parametrize("wants_usage", [False, True])
async def test_the_usage_chunk_is_counted_and_reaches_the_client_only_if_it_asked(wants_usage: bool) -> None:
    async with stream() as s:
        s.ex.wants_usage = wants_usage
        s.send(ROLE + EVENTS[0], EVENTS[1] + EVENTS[2] + USAGE + DONE, END)
        assert await asyncio.wait_for(await s.relay(), 5) is None
    assert s.client.body() == ROLE + b"".join(EVENTS[:3]) + (USAGE if wants_usage else b"") + DONE
    assert s.ex.usage == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert (s.ex.prompt_tokens, s.ex.completion_tokens, s.ex.texts_sent) == (7, 3, 3)
    assert s.ex.status == 200  # the access log's
    assert s.sample("inferstack_prompt_tokens_total", tenant="anonymous") == 7
    assert s.sample("inferstack_completion_tokens_total", tenant="anonymous") == 3


async def test_the_first_text_is_the_ttft_and_each_text_after_it_one_gap() -> None:
    # Three text events in one chunk (two gaps of zero), then one more: one TTFT, three gaps.
    async with stream() as s:
        s.send(ROLE)
        relay = await s.relay()
        await until(lambda: ROLE in s.client.written, "the role-only event")
        assert s.ex.ttft is None  # not text
        s.send(b"".join(EVENTS[:3]))
        await until(lambda: s.ex.ttft is not None, "the first text")
        s.send(EVENTS[3], DONE, END)
        assert await asyncio.wait_for(relay, 5) is None
    assert s.ex.ttft is not None and 0 < s.ex.ttft < 5
    assert s.sample("inferstack_time_to_first_token_seconds_count", endpoint="chat") == 1
    assert s.sample("inferstack_time_to_first_token_seconds_sum", endpoint="chat") == s.ex.ttft
    assert s.sample("inferstack_inter_token_latency_seconds_count", endpoint="chat") == 3
    zeros = s.sample("inferstack_inter_token_latency_seconds_bucket", endpoint="chat", le="0.001")
    assert zeros is not None and zeros >= 2
    assert s.ex.texts_sent == 4


def test_a_long_stream_shows_its_gaps_while_it_runs_and_the_rest_at_its_end() -> None:
    # The clock hands its gaps to the histogram every FLUSH_EVERY of them, so a long stream's
    # inter-token latency is seen before it ends; ``flush`` (the stream's end) hands over the rest.
    metrics = GatewayMetrics()
    ex = Exchange(request_id="r", upstream_id="u", endpoint="chat", started=time.perf_counter(), model="m")
    clock = _TextClock(ex, metrics)

    def gaps() -> float | None:
        return metrics.registry.get_sample_value(
            "inferstack_inter_token_latency_seconds_count", {"model": "m", "endpoint": "chat"}
        )

    for _ in range(HistogramBatch.FLUSH_EVERY):  # the first text (the TTFT), then FLUSH_EVERY - 1 gaps
        clock.sent(1)
    assert gaps() == 0
    clock.sent(1)  # the FLUSH_EVERY-th gap
    assert gaps() == HistogramBatch.FLUSH_EVERY
    clock.sent(3)  # one gap, and two of zero (three texts in one read)
    assert gaps() == HistogramBatch.FLUSH_EVERY
    clock.flush()
    assert gaps() == HistogramBatch.FLUSH_EVERY + 3


@pytest.mark.parametrize("chunks", ["after the end was sent", "in the chunk of the end"])
async def test_what_the_upstream_sends_after_done_is_not_relayed(chunks: str) -> None:
    # vLLM sends nothing after [DONE]; whatever an upstream does send must not follow the response's
    # end on the client's (keep-alive) connection, where it would be read as the next response.
    async with stream() as s:
        relay = await s.relay()
        if chunks == "after the end was sent":
            s.send(EVENTS[0], DONE)
            await until(lambda: s.cycle.response_complete, "the end of the response")
            s.send(EVENTS[1], END)
        else:
            s.send(EVENTS[0] + DONE + EVENTS[1], END)
        assert await asyncio.wait_for(relay, 5) is None
    assert s.client.written.endswith(DONE + b"\r\n0\r\n\r\n")  # nothing after the response's end
    assert s.client.body() == EVENTS[0] + DONE
    assert s.ex.texts_sent == 1
    assert s.sample("inferstack_inter_token_latency_seconds_count", endpoint="chat") == 0  # one text: no gap


@pytest.mark.parametrize("usage", [False, True])
async def test_a_stream_that_ends_without_done_is_ended_and_counted(usage: bool) -> None:
    async with stream() as s:
        s.ex.wants_usage = False
        s.send(EVENTS[0], *([USAGE] if usage else []), b"data: trailing", END)
        assert await asyncio.wait_for(await s.relay(), 5) is None
    assert s.client.body() == EVENTS[0] + b"data: trailing"  # the bytes after the last blank line too
    assert s.cycle.response_complete
    assert s.ex.usage == ({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10} if usage else None)


@pytest.mark.parametrize("usage", [False, True])
async def test_a_stream_the_client_leaves_is_billed_for_what_it_was_handed(usage: bool) -> None:
    async with stream() as s:
        s.send(EVENTS[0] + EVENTS[1], *([USAGE] if usage else []))
        relay = await s.relay()
        await until(lambda: EVENTS[1] in s.client.written and (not usage or s.ex.usage is None), "two events")
        if usage:
            await until(lambda: s.script.empty(), "the usage chunk sent")
        relay.cancel()
        with pytest.raises(asyncio.CancelledError):
            await relay
    estimate = estimate_prompt_tokens("chat", s.ex.payload)
    assert estimate > 0
    expected = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10} if usage else None
    assert s.ex.usage == (expected or {"prompt_tokens": estimate, "completion_tokens": 2})


@pytest.mark.parametrize("where", ["before the head", "mid-stream", "at the end"])
async def test_a_client_that_stops_reading_is_not_the_upstreams_failure(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A write the timer cuts (at least client_write after it began) is the client's: ClientStalled,
    # no error event, no "stream broke" (that would blame the replica), no error in the access log.
    loop = asyncio.get_running_loop()
    async with stream() as s:
        started = loop.time()
        if where == "before the head":
            s.flow.pause_writing()
            s.send(EVENTS[0])
            (await s.answer()).by = loop.time() + 0.2  # the first byte's deadline, nearer than client_write
            relay = await s.relay(idle=0.3, client_write=0.6)
        else:
            s.send(EVENTS[0])
            relay = await s.relay(idle=0.3, client_write=0.3)
            await until(lambda: EVENTS[0] in s.client.written, "the first event")
            s.flow.pause_writing()
            s.send(EVENTS[1] if where == "mid-stream" else DONE)
        with caplog.at_level(logging.WARNING, "inferstack.relay"), pytest.raises(ClientStalled):
            await asyncio.wait_for(relay, 5)
        if where == "before the head":
            assert loop.time() - started >= 0.6  # the write had client_write, not what was left of first_byte
    assert s.ex.error is None
    assert not [r for r in caplog.records if r.name == "inferstack.relay"]
    assert b'"error"' not in s.client.written


async def test_an_upstream_that_falls_silent_inside_the_first_event_is_the_upstreams_failure() -> None:
    # The response has started (its head), no event has: the silence is the upstream's, not the client's.
    async with stream() as s:
        s.send(b'data: {"choices"')
        relay = await s.relay(idle=0.3)
        failure = await asyncio.wait_for(relay, 5)
    assert failure is not None and failure.kind == "timeout"
    assert s.ex.error == "stream_timeout"
    assert error_of(s.client.body())["code"] == "upstream_timeout"


SPLIT = b'data: {"choices":[{"index":0,"delta":{"content":"sp', b'lit"}}]}\n\n'
STOP = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'


async def test_an_event_split_across_chunks_is_relayed_whole_once_it_is_complete() -> None:
    async with stream() as s:
        s.send(SPLIT[0])
        relay = await s.relay()
        response = s.reply.response if s.reply is not None else None
        assert response is not None
        # Taken by the relay (nothing buffered, not followed: part of an event waits in the splitter).
        await until(lambda: not response.buffered and not response.following and s.script.empty(), "the first part")
        assert s.ex.ttft is None and s.ex.texts_sent == 0
        s.send(SPLIT[1] + EVENTS[1])  # the rest of it and one more event: two events in one write
        await until(lambda: EVENTS[1] in s.client.written, "the split event and the next")
        s.send(EVENTS[2], DONE, END)
        assert await asyncio.wait_for(relay, 5) is None
    assert s.client.body() == SPLIT[0] + SPLIT[1] + EVENTS[1] + EVENTS[2] + DONE
    assert s.ex.texts_sent == 3
    assert s.sample("inferstack_time_to_first_token_seconds_count", endpoint="chat") == 1
    assert s.sample("inferstack_inter_token_latency_seconds_count", endpoint="chat") == 2


async def test_a_usage_chunk_of_its_own_is_not_relayed_unasked() -> None:
    # vLLM sends the usage chunk as a chunk of its own: the fast path must decline it.
    async with stream() as s:
        s.ex.wants_usage = False
        s.send(EVENTS[0], USAGE, EVENTS[1])
        relay = await s.relay()
        await until(lambda: EVENTS[1] in s.client.written, "the event after the usage chunk")
        s.send(DONE, END)
        assert await asyncio.wait_for(relay, 5) is None
    assert s.client.body() == EVENTS[0] + EVENTS[1] + DONE
    assert s.ex.usage == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert s.ex.texts_sent == 2


async def test_a_cache_fill_sees_every_event() -> None:
    # A streamed miss fills the response cache: the assembler must get each event, whichever path
    # would have relayed it without a fill (whole chunks, single events, the usage chunk, the end).
    assembler = StreamAssembler("chat")
    async with stream() as s:
        s.ex.admission = Admission(ANONYMOUS_PRINCIPAL, "anonymous", "chat", "m", True, None, assembler=assembler)
        s.ex.wants_usage = False
        relay = await s.relay()
        for chunk in (ROLE + EVENTS[0], EVENTS[1], SPLIT[0] + SPLIT[1], STOP):
            s.send(chunk)  # one read each (a chunk of whole events, and one of a single event)
            await until(lambda c=chunk: s.client.written.endswith(c + b"\r\n"), "the chunk relayed")  # type: ignore[misc]
        s.send(USAGE, DONE, END)
        assert await asyncio.wait_for(relay, 5) is None
    assert s.client.body() == ROLE + EVENTS[0] + EVENTS[1] + SPLIT[0] + SPLIT[1] + STOP + DONE
    whole = assembler.result()
    assert whole is not None
    assert orjson.loads(whole)["choices"][0]["message"]["content"] == "w0 w1 split"


async def test_every_chunk_is_relayed_when_each_one_needs_the_timer_moved_for_its_write() -> None:
    # client_write longer than the read window (1.5 x idle): after each read the timer is due
    # sooner than a write needs, so the fast path declines every chunk after the first and the
    # coroutine moves the timer and writes it.
    async with stream() as s:
        s.send(EVENTS[0])
        relay = await s.relay(idle=1.0, client_write=2.0)
        for n in (1, 2):
            await until(lambda n=n: EVENTS[n - 1] in s.client.written, "the event before")  # type: ignore[misc]
            s.send(EVENTS[n])
        s.send(DONE, END)
        assert await asyncio.wait_for(relay, 5) is None
    assert s.client.body() == b"".join(EVENTS[:3]) + DONE


async def test_the_total_deadline_cuts_a_stream_within_its_idle_window() -> None:
    async with stream() as s:
        s.ex.deadline = time.monotonic() + 0.5  # timeouts.total, from the request's start
        s.send(EVENTS[0])
        relay = await s.relay(idle=30.0)
        failure = await asyncio.wait_for(relay, 5)
    assert failure is not None and failure.kind == "timeout"
    assert error_of(s.client.body())["code"] == "upstream_timeout"


async def test_an_empty_stream_is_the_replicas_failure_and_reaches_no_client() -> None:
    async with stream() as s:
        s.send(END)
        failure = await asyncio.wait_for(await s.relay(), 5)
    assert failure is not None and failure.kind == "protocol" and failure.retryable
    assert failure.error.message == "The upstream replica sent an empty stream."
    assert s.client.written == b""


async def test_part_of_an_event_after_done_is_not_relayed() -> None:
    async with stream() as s:
        s.send(EVENTS[0], DONE + b"data: x", END)
        assert await asyncio.wait_for(await s.relay(), 5) is None
    assert s.client.body() == EVENTS[0] + DONE
    assert s.client.written.endswith(b"\r\n0\r\n\r\n")


async def test_a_first_byte_that_does_not_come_by_its_deadline_is_the_attempts_timeout() -> None:
    # The head came, the body does not: a failure before anything reached the client, retried.
    async with stream() as s:
        (await s.answer()).by = asyncio.get_running_loop().time() + 0.3
        failure = await asyncio.wait_for(await s.relay(), 5)
    assert failure is not None and failure.kind == "timeout"
    assert s.client.written == b""


@pytest.mark.parametrize("when", ["before the first byte", "after [DONE]"])
async def test_a_cancel_bills_nothing_more_than_was_delivered(when: str) -> None:
    # Before the first byte nothing was delivered; after [DONE] (the relay still reading the
    # upstream's end) the usage is already counted: a cancel then must not count it twice.
    async with stream() as s:
        relay = await s.relay()
        if when == "after [DONE]":
            s.send(EVENTS[0], USAGE, DONE)
            await until(lambda: s.cycle.response_complete, "the end of the response")
        else:
            await until(lambda: s.reply is not None and s.reply.response.following, "the relay to wait")
        relay.cancel()
        with pytest.raises(asyncio.CancelledError):
            await relay
    if when == "after [DONE]":
        assert s.ex.usage == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        assert s.sample("inferstack_prompt_tokens_total", tenant="anonymous") == 7
        assert s.sample("inferstack_completion_tokens_total", tenant="anonymous") == 3
    else:
        assert s.ex.usage is None and s.client.written == b""
        assert s.sample("inferstack_prompt_tokens_total", tenant="anonymous") is None


# vLLM with ``stream_options.continuous_usage_stats``: every text event carries the usage so far.
WITH_USAGE = [
    b'data: {"choices":[{"index":0,"delta":{"content":"t%d"}}],"usage":{"prompt_tokens":7,"completion_tokens":%d}}\n\n'
    % (i, i + 1)
    for i in range(3)
]


async def test_text_events_that_carry_usage_are_timed_and_billed_when_the_client_leaves() -> None:
    # Such events take the event-by-event path (a usage field inside); their text counts there too:
    # the first one is the TTFT, and a client that leaves after three is billed for three.
    async with stream() as s:
        s.send(*WITH_USAGE)
        relay = await s.relay()
        await until(lambda: WITH_USAGE[2] in s.client.written, "three events")
        assert s.ex.ttft is not None
        relay.cancel()
        with pytest.raises(asyncio.CancelledError):
            await relay
    assert b"".join(WITH_USAGE) in bytes(s.client.written)
    assert s.ex.texts_sent == 3
    assert s.sample("inferstack_inter_token_latency_seconds_count", endpoint="chat") == 2
    assert s.ex.usage == {"prompt_tokens": estimate_prompt_tokens("chat", s.ex.payload), "completion_tokens": 3}


async def test_an_event_of_several_choices_counts_each_choice_with_text_on_either_path() -> None:
    # n=3: one event may hold several choices' deltas (one ended here). The fast path (the chunk
    # alone) and the event-by-event path (the same event after part of one, so the splitter holds
    # a remainder) must count it the same: two texts each time.
    three = (
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"},{"index":1,"delta":{"content":"a"}},'
        b'{"index":2,"delta":{"content":"b"}}]}\n\n'
    )
    async with stream() as s:
        s.send(three, three[:10])
        relay = await s.relay()
        await until(lambda: s.ex.texts_sent == 2, "the fast path's count")
        s.send(three[10:], DONE, END)
        assert await asyncio.wait_for(relay, 5) is None
    assert s.client.body() == three * 2 + DONE
    assert s.ex.texts_sent == 4
