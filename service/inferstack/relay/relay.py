"""Relaying an upstream answer to the client: SSE event by event as it arrives, or a whole body.

Once anything has reached the client there is no retry: a failure then ends the stream with an SSE
error event, and the relay reports it to the router (which counts it against the replica).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import orjson

from ..exchange import Exchange, Responder
from ..metrics.gateway import GatewayMetrics
from ..upstream.client import AttemptError, Reply, classify
from .sse import EventSplitter, carries_text, error_event, usage_of

log = logging.getLogger("inferstack.relay")


async def relay_whole(reply: Reply, ex: Exchange, out: Responder, metrics: GatewayMetrics) -> None:
    """A non-stream answer (including the upstream's own 4xx errors), passed through unchanged."""
    status, data = reply.response.status, reply.first
    ex.status = status
    if status == 200:
        ex.whole = data
        account(ex, _usage_of_body(data), metrics)
    await out.whole(status, data, ex)


async def relay_stream(
    reply: Reply, ex: Exchange, out: Responder, metrics: GatewayMetrics, idle: float
) -> AttemptError | None:
    """Relay the SSE stream to its end; return the failure that cut it short, if any."""
    resp = reply.response
    ex.status = 200
    assembler = ex.admission.assembler if ex.admission is not None else None
    wants_usage = ex.wants_usage
    await out.start(200, ex)
    splitter = EventSplitter()
    ttft_hist = metrics.child(metrics.ttft, ex.model, ex.endpoint)
    itl_hist = metrics.child(metrics.itl, ex.model, ex.endpoint)
    last_text: float | None = None
    usage: dict[str, Any] | None = None
    failure: AttemptError | None = None
    loop = asyncio.get_running_loop()
    total_by = loop.time() + ex.deadline - time.monotonic()
    chunk = reply.first
    try:
        async with asyncio.timeout_at(min(loop.time() + idle, total_by)) as timer:
            while chunk:
                events = splitter.feed(chunk)
                if events:
                    parts: list[bytes] = []
                    texts = 0
                    for event in events:
                        if assembler is not None:
                            assembler.feed(event)
                        if b'"usage":{' in event:
                            found = usage_of(event)
                            if found is not None:
                                usage = found
                                if not wants_usage:
                                    continue
                        elif carries_text(event):
                            texts += 1
                        parts.append(event)
                    if parts:
                        await out.body(b"".join(parts) if len(parts) > 1 else parts[0])
                    if texts:
                        now = time.perf_counter()
                        if last_text is None:
                            ex.ttft = now - ex.started
                            ttft_hist.observe(ex.ttft)
                        else:
                            itl_hist.observe(now - last_text)
                        for _ in range(texts - 1):
                            itl_hist.observe(0.0)
                        last_text = now
                # Push the idle deadline out only when less than `idle` is left: one reschedule
                # per half window instead of one per token. Silence is cut after idle..1.5 x idle.
                now_l = loop.time()
                when = timer.when()
                if when is not None and when - now_l < idle and when < total_by:
                    timer.reschedule(min(now_l + idle * 1.5, total_by))
                chunk = await resp.content.readany()
        rest = splitter.flush()
        if rest:
            await out.body(rest)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        failure = classify(exc)
        ex.error = f"stream_{failure.kind}"
        log.warning(
            "stream broke after it started",
            extra={"request_id": ex.request_id, "upstream": ex.upstream, "kind": failure.kind},
        )
        await out.body(error_event(failure.error.to_body()))
    account(ex, usage, metrics)
    await out.end()
    return failure


def account(ex: Exchange, usage: dict[str, Any] | None, metrics: GatewayMetrics) -> None:
    """Record the upstream's usage on the exchange (for billing) and in the token counters."""
    if not usage:
        return
    ex.usage = usage
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    if isinstance(prompt, int):
        ex.prompt_tokens = prompt
        metrics.prompt_tokens.labels(ex.model, ex.tenant).inc(prompt)
    if isinstance(completion, int):
        ex.completion_tokens = completion
        metrics.completion_tokens.labels(ex.model, ex.tenant).inc(completion)


def _usage_of_body(data: bytes) -> dict[str, Any] | None:
    if b'"usage"' not in data:
        return None
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    usage = parsed.get("usage") if isinstance(parsed, dict) else None
    return usage if isinstance(usage, dict) else None
