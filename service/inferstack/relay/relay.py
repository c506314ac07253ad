"""Relaying an upstream answer to the client: SSE event by event as it arrives, or a whole body.

Once anything has reached the client there is no retry: a failure then ends the stream with an SSE
error event, and the relay reports it to the router (which counts it against the replica). A client
that stops reading is not the replica's failure: writes have their own deadline
(``timeouts.client_write``) and the request then ends at once (``ClientStalled``).

A stream that ends early (the client left or stalled) is billed for what was delivered: the
upstream's usage if it had arrived, else the token-carrying deltas handed to the client as completion
tokens (vLLM sends one token per event) and the admission estimate of the prompt (docs/tenancy.md).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable
from typing import Any

from ..errors import UpstreamError, normalise_upstream_error, normalise_upstream_error_event
from ..exchange import ClientStalled, Exchange, Responder
from ..filters.tokens import estimate_prompt_tokens
from ..metrics.gateway import GatewayMetrics, HistogramBatch, observe
from ..upstream.client import EMPTY_STREAM, Reply, Response, classify
from ..upstream.failures import AttemptError
from .sse import DONE, ERROR_EVENT, EventSplitter, error_event, text_count, usage_of, usage_of_body, whole_events

log = logging.getLogger("inferstack.relay")


async def relay_whole(reply: Reply, ex: Exchange, out: Responder, metrics: GatewayMetrics) -> None:
    """A non-stream answer: a 200 passes through unchanged; an error gets an OpenAI body (``errors``)."""
    status, data = reply.response.status, reply.first
    if status == 200:
        ex.whole = data
        account(ex, usage_of_body(data), metrics)
    else:
        status, normalised = normalise_upstream_error(status, data)
        if normalised is not None:
            data = normalised
            ex.response_headers[:] = [(n, v) for n, v in ex.response_headers if n != b"content-type"]
            ex.response_headers.append((b"content-type", b"application/json"))
    ex.status = status
    await out.whole(status, data, ex)


async def relay_stream(
    reply: Reply, ex: Exchange, out: Responder, metrics: GatewayMetrics, idle: float, client_write: float
) -> AttemptError | None:
    """Relay the SSE stream to its end; return the upstream failure that cut it short, if any.

    The stream's first byte is awaited here, by the attempt's deadline (``reply.by``): a failure
    before it (a timeout, a broken connection, an empty stream) reached no client and is returned as
    the attempt's would be, retried by the router (``out.started`` is still False).

    Two paths, one order. The common chunk (whole events, no usage chunk, not the end, the client's
    socket taking writes, no response cache filling) is relayed by ``_Relay.fast`` from the upstream
    connection's ``data_received`` (``Response.follow``): forwarded as it is, its text events
    counted, with no task wake-up; the first one too, with the response's head in the same write
    (the first token then waits for no turn of the event loop). Anything else is declined there and
    waits for this coroutine's read, which relays it event by event and, when all is back to the
    common case, follows again.

    One timer covers the upstream's silence (``idle``) and the client's writes (``client_write``):
    before a read it is moved to at least ``idle`` ahead, before a write to at least ``client_write``
    ahead, each only when less is left (one reschedule per half window, not one per token; with the
    defaults none at all in a stream shorter than ``idle / 2``). ``r.writing`` tells whose deadline passed.

    The batch that ends with ``data: [DONE]`` is the response's last send (``Responder.last``: its
    body and the end of the chunked response in one write), after the usage is accounted; anything
    the upstream sends after it is read (so its connection is reused) but not relayed.
    """
    resp = reply.response
    ex.status = 200
    loop = asyncio.get_running_loop()
    now = loop.time()
    total_by = now + ex.deadline - time.monotonic()
    failure: AttemptError | None = None
    r = _Relay(ex, out, metrics, loop, idle, client_write, total_by)
    # Until the first byte, the attempt's deadline holds; the first chunk moves the timer on.
    when = min(reply.by, total_by)
    try:
        try:
            async with asyncio.timeout_at(when) as r.timer:
                r.write_check = when - client_write
                await r.pump(resp, reply.first)
            if not out.started:
                # Nothing came, and nothing reached the client: the replica's failure, retried.
                return AttemptError("protocol", UpstreamError(EMPTY_STREAM))
            rest = r.splitter.flush()
            if rest and not out.finished:
                await _write(out.body(rest), client_write)
        except (TimeoutError, OSError) as exc:
            resp.follow(None)
            if r.writing:
                raise ClientStalled from None
            if not out.started:
                return classify(exc)  # before the first byte: as the attempt's own failure, retried
            failure = await r.broke(exc)
        if not out.finished:
            account(ex, r.usage, metrics)
            await _write(out.end(), client_write)
    except (asyncio.CancelledError, ClientStalled):
        resp.follow(None)
        if ex.usage is None and out.started:
            account(ex, r.usage or _delivered(ex), metrics)
        raise
    finally:
        r.clock.flush()
    return failure


class _Relay:
    """A stream's relay state shared by its two paths: the fast path (``fast``, called from the
    upstream's ``data_received``) and the coroutine's (``pump`` and ``slow``)."""

    __slots__ = (
        "_assembler",
        "_ex",
        "_idle",
        "_loop",
        "_metrics",
        "_out",
        "_total_by",
        "_wants_usage",
        "_write",
        "clock",
        "read_check",
        "splitter",
        "timer",
        "usage",
        "write_check",
        "writing",
    )

    def __init__(
        self,
        ex: Exchange,
        out: Responder,
        metrics: GatewayMetrics,
        loop: asyncio.AbstractEventLoop,
        idle: float,
        client_write: float,
        total_by: float,
    ) -> None:
        self._ex = ex
        self._out = out
        self._metrics = metrics
        self._loop = loop
        self.timer: asyncio.Timeout | None = None
        self._idle = idle
        self._write = client_write
        self._total_by = total_by
        self._assembler = ex.admission.assembler if ex.admission is not None else None
        self._wants_usage = ex.wants_usage
        self.clock = _TextClock(ex, metrics)
        self.write_check = self.read_check = 0.0
        self.splitter = EventSplitter()
        self.usage: dict[str, Any] | None = None
        """The upstream's usage chunk, once it has passed."""
        self.writing = False
        """A write to the client is under way: a timeout now is the client's (``ClientStalled``)."""

    async def pump(self, resp: Response, chunk: bytes) -> None:
        """Relay ``chunk`` and the rest of the upstream's body, in order, to its end."""
        # Only the common case is followed: a cache fill sees every event (the assembler).
        follow = self._assembler is None
        splitter = self.splitter
        while True:
            # (After [DONE] no chunk is offered to the fast path: ``slow`` reads it and relays nothing.)
            if chunk and not (follow and not splitter.pending and not self._out.finished and self.fast(chunk)):
                await self.slow(chunk)
            if follow and not self._out.finished and not splitter.pending and not resp.buffered:
                resp.follow(self.fast)
            chunk = await resp.readany()
            resp.follow(None)
            if not chunk:
                return

    def fast(self, chunk: bytes) -> bool:
        """Relay a chunk of whole events (not the usage chunk, not the end) at once, if the client's
        socket takes it; else False (the coroutine's path takes it). Called from ``data_received``:
        it must not raise."""
        texts = whole_events(chunk)
        if texts < 0:  # (the end, too: it is the response's last write, ``slow``'s)
            return False
        now = self._loop.time()
        out = self._out
        if out.started:
            if now >= self.write_check:
                return False  # the timer needs moving for the write
        elif not self._start(now):  # (which moves it, if need be)
            return False
        if not out.write_now(chunk):
            return False  # the client is not reading
        if texts:
            self._ex.texts_sent += texts
            self.clock.sent(texts)
        if now >= self.read_check:
            self.after_read(now)
        return True

    def _start(self, now: float) -> bool:
        """The response starts with the stream's first chunk, from ``data_received`` too: its head
        kept to go out with the chunk (``Responder.start_now``), the timer moved from the first-byte
        deadline to the write's (the read's follows the write)."""
        timer = self.timer
        if timer is None or timer.expired() or not self._out.start_now(200, self._ex):
            return False
        self.before_write(now)
        return True

    async def slow(self, chunk: bytes) -> None:
        """Relay a chunk ``fast`` declined (or could not be offered): its events, under the write
        deadline; the batch with ``[DONE]`` as the response's last write, after the accounting."""
        out = self._out
        if not out.started:
            self.before_write(self._loop.time())
            self.writing = True
            await out.start(200, self._ex)
            self.writing = False
        # After [DONE]: read to the end (the connection is reused), relay nothing.
        data, texts = (b"", 0) if out.finished else self._events(chunk)
        if data:
            self._ex.texts_sent += texts
            self.before_write(self._loop.time())
            self.writing = True
            if data.endswith(DONE):
                # The client may look at the metrics once it has the end: fill them first.
                if texts:
                    self.clock.sent(texts)
                    texts = 0
                self.clock.flush()
                account(self._ex, self.usage, self._metrics)
                await out.last(data)
            elif not out.write_now(data):
                await out.body(data)
            self.writing = False
        if texts:
            self.clock.sent(texts)
        self.after_read(self._loop.time())

    def _events(self, chunk: bytes) -> tuple[bytes, int]:
        """What of ``chunk`` goes to the client, and how many token-carrying deltas that is: whole events
        without the usage chunk as they are (counted, not split); else event by event, the usage
        chunk kept (and dropped when the client did not ask for it), a cache fill fed each event."""
        assembler = self._assembler
        if assembler is None and not self.splitter.pending:
            texts = whole_events(chunk)
            if texts >= 0:
                return chunk, texts
        texts = 0
        parts: list[bytes] = []
        for event in self.splitter.feed(chunk):
            if assembler is not None:
                assembler.feed(event)
            if event.find(b'"usage":{') >= 0:  # (find, not in: sse.py)
                found = usage_of(event)
                if found is not None:
                    self.usage = found
                    if not self._wants_usage:
                        continue
            if event.startswith(ERROR_EVENT):  # the engine's own vocabulary (``errors``)
                event = normalise_upstream_error_event(event)
                self._ex.error = "stream_engine_error"
            # (Text events carry usage too when the client asked for ``continuous_usage_stats``.)
            texts += text_count(event)
            parts.append(event)
            if event == DONE:
                break  # the end: what the upstream sends after it is not relayed
        if not parts:
            return b"", 0
        return (b"".join(parts) if len(parts) > 1 else parts[0]), texts

    async def broke(self, exc: TimeoutError | OSError) -> AttemptError:
        """The upstream failed (or fell silent) mid-stream: the client gets an SSE error event."""
        failure = classify(exc)
        ex = self._ex
        ex.error = f"stream_{failure.kind}"
        log.warning(
            "stream broke after it started",
            extra={"request_id": ex.request_id, "upstream": ex.upstream, "kind": failure.kind},
        )
        if not self._out.finished:
            await _write(self._out.body(error_event(failure.error.to_body())), self._write)
        return failure

    def before_write(self, now: float) -> None:
        """At least ``client_write`` left on the timer before a write."""
        if now >= self.write_check:
            timer = self.timer
            assert timer is not None
            when = timer.when() or now
            if when - now < self._write:
                when = now + self._write
                timer.reschedule(when)
            self.write_check, self.read_check = _checks(when, now, self._idle, self._write, self._total_by)

    def after_read(self, now: float) -> None:
        """At least ``idle`` left on the timer (up to 1.5 x) before the next read, within the total."""
        timer = self.timer
        # (Expired: the fast path ran between the timer's expiry and the task's cancel; too late.)
        if now >= self.read_check and timer is not None and not timer.expired():
            when = timer.when() or now
            latest = min(now + self._idle * 1.5, self._total_by)
            if when > latest or (when - now < self._idle and when < self._total_by):
                when = latest
                timer.reschedule(when)
            self.write_check, self.read_check = _checks(when, now, self._idle, self._write, self._total_by)


def _checks(when: float, now: float, idle: float, client_write: float, total_by: float) -> tuple[float, float]:
    """The loop times past which the timer (due at ``when``) must move: before a write (less than
    ``client_write`` left), before a read (less than ``idle`` left; at once when a write moved it
    past the read window; never once it is at the total deadline). One comparison per chunk each."""
    if when > min(now + idle * 1.5, total_by):
        read_check = -math.inf
    elif when >= total_by:
        read_check = math.inf
    else:
        read_check = when - idle
    return when - client_write, read_check


class _TextClock:
    """TTFT and inter-token latency, observed as token-carrying events are handed to the client.

    The gaps are kept as plain numbers (an append a token, not a call) and go to a ``HistogramBatch``
    every ``FLUSH_EVERY`` of them and when the stream ends (``flush``); the batch adds them to the
    histogram.
    """

    __slots__ = ("_ex", "_gaps", "_itl", "_last", "_ttft")

    def __init__(self, ex: Exchange, metrics: GatewayMetrics) -> None:
        self._ex = ex
        self._ttft = metrics.child(metrics.ttft, ex.model, ex.endpoint)
        self._itl = HistogramBatch(metrics.child(metrics.itl, ex.model, ex.endpoint))
        self._gaps: list[float] = []
        self._last: float | None = None

    def sent(self, texts: int) -> None:
        now = time.perf_counter()
        last, self._last = self._last, now
        if last is None:
            self._ex.ttft = now - self._ex.started
            observe(self._ttft, self._ex.ttft)
        else:
            gaps = self._gaps
            gaps.append(now - last)
            if len(gaps) >= HistogramBatch.FLUSH_EVERY:
                self._itl.observe_all(gaps)
                gaps.clear()
        if texts > 1:
            self._itl.observe(0.0, texts - 1)

    def flush(self) -> None:
        if self._gaps:
            self._itl.observe_all(self._gaps)
            self._gaps.clear()
        self._itl.flush()


async def _write(send: Awaitable[None], client_write: float) -> None:
    try:
        async with asyncio.timeout(client_write):
            await send
    except TimeoutError:
        raise ClientStalled from None


def _delivered(ex: Exchange) -> dict[str, int]:
    """What a stream cut short delivered: its token-carrying deltas as completion tokens, the prompt estimate."""
    return {"prompt_tokens": estimate_prompt_tokens(ex.endpoint, ex.payload), "completion_tokens": ex.texts_sent}


def account(ex: Exchange, usage: dict[str, Any] | None, metrics: GatewayMetrics) -> None:
    """Record the upstream's usage on the exchange (for billing) and in the token counters."""
    if not usage:
        return
    ex.usage = usage
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    if isinstance(prompt, int):
        ex.prompt_tokens = prompt
        metrics.tally(metrics.prompt_tokens, ex.model, ex.tenant).inc(prompt)
        if ex.route is not None:
            metrics.routed_prompt(ex.route.policy, prompt, usage.get("prompt_tokens_details"))
    if isinstance(completion, int):
        ex.completion_tokens = completion
        metrics.tally(metrics.completion_tokens, ex.model, ex.tenant).inc(completion)
