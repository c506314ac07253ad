"""The hot path: ``POST /v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings``.

A raw ASGI endpoint, mounted in the FastAPI app, so that a request pays for none of FastAPI's
per-request machinery (dependency solving, response models). The request path, in order:

    read body -> validate -> filters.admit (auth, limits, cache) -> route (hold, pick a replica)
    -> upstream attempt (retried on another replica before the first byte) -> relay -> account

Streams are relayed event by event as they arrive. Once anything has reached the client there is no
retry: a failure then ends the stream with an SSE error event.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from ..config import Settings
from ..errors import (
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    UpstreamError,
    internal_error_body,
)
from ..filters import Admission, Tenancy
from ..metrics.gateway import GatewayMetrics
from ..router.hold import HoldQueue
from ..router.retry import backoff
from ..scheduler import Route, Scheduler
from ..upstream.endpoint import Endpoint
from ..upstream.pool import UpstreamPool
from .client import AttemptError, classify
from .sse import DONE, EventSplitter, carries_text, error_event, usage_of

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

access_log = logging.getLogger("inferstack.access")
log = logging.getLogger("inferstack.relay")

RELAY_PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings"}
# What each endpoint must carry besides ``model``; checked here so a bad request costs no upstream call.
REQUIRED_FIELD = {"chat": "messages", "completions": "prompt", "embeddings": "input"}
_FORWARDED_RESPONSE_HEADERS = ("content-type",)


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


@dataclass
class Exchange:
    """One request as it moves through the path: what the access log and the accounting need."""

    request_id: str
    endpoint: str
    started: float
    model: str = "unknown"
    stream: bool = False
    tenant: str = "anonymous"
    status: int = 0
    upstream: str | None = None
    attempts: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft: float | None = None
    error: str | None = None
    route: Route | None = None
    usage: dict[str, Any] | None = None
    whole: bytes | None = None
    """The body of a non-stream 200, for the response cache."""
    request_headers: dict[str, str] = field(default_factory=dict)
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class ProxyEndpoint:
    def __init__(
        self,
        kind: str,
        settings: Settings,
        session: aiohttp.ClientSession,
        pool: UpstreamPool,
        holds: HoldQueue,
        scheduler: Scheduler,
        metrics: GatewayMetrics,
        tenancy: Tenancy,
    ) -> None:
        self.kind = kind
        self.path = RELAY_PATHS[kind]
        self._settings = settings
        self._session = session
        self._pool = pool
        self._holds = holds
        self._scheduler = scheduler
        self._metrics = metrics
        self._tenancy = tenancy
        # Request ids: a random prefix and a counter; uuid4 costs a syscall per request.
        self._id_prefix = secrets.token_hex(8)
        self._id_counter = itertools.count(1)

    def _new_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id") or self._new_request_id()
        ex = Exchange(request_id=request_id[:128], endpoint=self.kind, started=started, request_headers=headers)
        ex.response_headers.append((b"x-request-id", ex.request_id.encode("latin-1", "replace")))
        responder = _Responder(send)
        task = asyncio.current_task()
        assert task is not None
        watcher: asyncio.Task[None] | None = None
        cancelled_by_client = False

        def client_left(watch: asyncio.Task[None]) -> None:
            nonlocal cancelled_by_client
            if not watch.cancelled() and not responder.finished:
                cancelled_by_client = True
                task.cancel()

        try:
            body = await _read_body(ex.request_headers, receive, self._settings.max_body_bytes)
            # From here on, a disconnect cancels the request, and with it the upstream call.
            watcher = asyncio.create_task(_wait_disconnect(receive))
            watcher.add_done_callback(client_left)
            payload = self._validate(body, ex)
            admission = await self._tenancy.admit(
                self.kind, payload, body, scope["headers"], self._pool.revision(payload["model"])
            )
            ex.tenant = admission.tenant_label
            ex.response_headers.extend(admission.headers)
            reached_upstream = False
            try:
                self._check_model(payload, ex)
                if admission.cached is not None:
                    await self._replay(admission, payload, ex, responder)
                else:
                    reached_upstream = True
                    await self._forward(payload, body, ex, responder, admission)
            finally:
                await self._tenancy.finish(
                    admission, status=ex.status, usage=ex.usage, response=ex.whole, reached_upstream=reached_upstream
                )
        except ClientGone:
            ex.status = 499
        except asyncio.CancelledError:
            if not cancelled_by_client:
                raise
            task.uncancel()
            ex.status, ex.error = 499, "client_disconnect"
            self._metrics.upstream_errors.labels(ex.model, "client_disconnect").inc()
        except GatewayError as err:
            ex.status, ex.error = err.status, err.code or err.type
            await responder.error(err, ex)
        except Exception:
            log.exception("request failed", extra={"request_id": ex.request_id})
            ex.status, ex.error = 500, "internal_error"
            await responder.error_body(500, internal_error_body(), ex)
        finally:
            if watcher is not None:
                watcher.cancel()
            self._finish(ex)

    # -- validation -------------------------------------------------------------------------------
    def _validate(self, body: bytes, ex: Exchange) -> dict[str, Any]:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidRequestError("The request body is not valid JSON.") from None
        if not isinstance(payload, dict):
            raise InvalidRequestError("The request body must be a JSON object.")
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequestError("'model' is required and must be a non-empty string.", param="model")
        required = REQUIRED_FIELD[self.kind]
        if payload.get(required) in (None, "", []):
            raise InvalidRequestError(f"'{required}' is required.", param=required)
        if self.kind == "chat" and not isinstance(payload["messages"], list):
            raise InvalidRequestError("'messages' must be an array of messages.", param="messages")
        stream = payload.get("stream", False)
        if not isinstance(stream, bool) or (stream and self.kind == "embeddings"):
            raise InvalidRequestError("'stream' must be a boolean (and false for embeddings).", param="stream")
        ex.stream = stream
        return payload

    def _check_model(self, payload: dict[str, Any], ex: Exchange) -> None:
        # After auth: an unauthenticated caller learns nothing about which models exist.
        model = payload["model"]
        if model not in self._pool.known_models:
            raise NotFoundError(f"The model '{model}' does not exist.", param="model", code="model_not_found")
        ex.model = model

    async def _replay(self, adm: Admission, payload: dict[str, Any], ex: Exchange, out: _Responder) -> None:
        """A cache hit or an Idempotency-Key replay: the stored answer, as JSON or as a stream."""
        assert adm.cached is not None
        if not ex.stream:
            ex.status = adm.cached_status
            ex.response_headers.append((b"content-type", b"application/json"))
            await out.whole(adm.cached_status, adm.cached, ex)
            return
        options = payload.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        ex.status = 200
        ex.response_headers.append((b"content-type", b"text/event-stream; charset=utf-8"))
        await out.start(200, ex)
        await out.body(b"".join(adm.replay_events(wants_usage)))
        await out.end()

    # -- routing and retries ----------------------------------------------------------------------
    async def _forward(
        self, payload: dict[str, Any], body: bytes, ex: Exchange, out: _Responder, adm: Admission
    ) -> None:
        wants_usage = True
        if ex.stream:
            options = payload.get("stream_options")
            wants_usage = isinstance(options, dict) and options.get("include_usage") is True
            if not wants_usage:
                # Ask for the usage chunk to count tokens without a tokenizer; strip it on the way back.
                payload["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
                body = orjson.dumps(payload)
        route = self._scheduler.route(ex.model, payload, self.kind, ex.request_headers)
        ex.route = route
        pick = self._scheduler.picker(route)
        deadline = time.monotonic() + self._settings.timeouts.total
        exclude: frozenset[str] = frozenset()
        endpoint = await self._holds.acquire(ex.model, pick)
        while endpoint is not None:
            ex.upstream, ex.attempts = endpoint.url, ex.attempts + 1
            try:
                await self._attempt(endpoint, body, ex, out, wants_usage, deadline, adm)
                self._pool.record_success(endpoint)
                return
            except AttemptError as err:
                failure = err
                self._metrics.upstream_errors.labels(ex.model, err.kind).inc()
                self._pool.record_failure(endpoint, ex.model)
                log.warning(
                    "upstream attempt failed",
                    extra={"request_id": ex.request_id, "upstream": endpoint.url, "kind": err.kind},
                )
            finally:
                self._holds.release(ex.model, endpoint)
                self._scheduler.finished(route, endpoint)
            # Nothing has reached the client: try another replica, within the retry policy and deadline.
            exclude = exclude | {endpoint.url}
            wait = backoff(self._settings.retry, ex.attempts)
            if ex.attempts > self._settings.retry.max_retries or time.monotonic() + wait >= deadline:
                break
            await asyncio.sleep(wait)
            endpoint = await self._holds.acquire(ex.model, pick, exclude, wait=False)
            if endpoint is not None:
                self._metrics.retries.labels(ex.model).inc()
        raise failure.error

    # -- one upstream attempt ---------------------------------------------------------------------
    async def _attempt(
        self,
        endpoint: Endpoint,
        body: bytes,
        ex: Exchange,
        out: _Responder,
        wants_usage: bool,
        deadline: float,
        adm: Admission,
    ) -> None:
        """Raise AttemptError for anything that fails before the first byte goes to the client."""
        headers = {"content-type": "application/json", "x-request-id": ex.request_id}
        loop = asyncio.get_running_loop()
        first_byte_by = loop.time() + min(self._settings.timeouts.first_byte, deadline - time.monotonic())
        resp: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout_at(first_byte_by):
                resp = await self._session.post(endpoint.url + self.path, data=body, headers=headers)
                if resp.status >= 500:
                    raise AttemptError(
                        "http_5xx", UpstreamError(f"The upstream replica failed with status {resp.status}.")
                    )
                streaming = ex.stream and resp.status == 200 and resp.content_type == "text/event-stream"
                if streaming:
                    first = await resp.content.readany()
                    if not first:
                        raise AttemptError("protocol", UpstreamError("The upstream replica sent an empty stream."))
                else:
                    first = await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if resp is not None:
                resp.close()
            raise classify(exc, endpoint.url) from None
        except BaseException:
            if resp is not None:
                resp.close()
            raise
        ex.response_headers.extend(
            (name.encode(), resp.headers[name].encode("latin-1"))
            for name in _FORWARDED_RESPONSE_HEADERS
            if name in resp.headers
        )
        try:
            if streaming:
                await self._relay(resp, endpoint, first, ex, out, wants_usage, deadline, adm)
            else:
                # Non-stream answers (including the upstream's own 4xx errors) pass through unchanged.
                ex.status = resp.status
                if resp.status == 200:
                    ex.whole = first
                    self._account(ex, _usage_of_body(first))
                await out.whole(resp.status, first, ex)
        finally:
            resp.close()

    async def _relay(
        self,
        resp: aiohttp.ClientResponse,
        endpoint: Endpoint,
        first: bytes,
        ex: Exchange,
        out: _Responder,
        wants_usage: bool,
        deadline: float,
        adm: Admission,
    ) -> None:
        ex.status = 200
        assembler = adm.assembler
        await out.start(200, ex)
        splitter = EventSplitter()
        ttft_hist = self._metrics.child(self._metrics.ttft, ex.model, ex.endpoint)
        itl_hist = self._metrics.child(self._metrics.itl, ex.model, ex.endpoint)
        last_text: float | None = None
        usage: dict[str, Any] | None = None
        idle = self._settings.timeouts.idle
        loop = asyncio.get_running_loop()
        total_by = loop.time() + deadline - time.monotonic()
        chunk = first
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
            failure = classify(exc, "")
            self._metrics.upstream_errors.labels(ex.model, failure.kind).inc()
            self._pool.record_failure(endpoint, ex.model)
            ex.error = f"stream_{failure.kind}"
            log.warning(
                "stream broke after it started",
                extra={"request_id": ex.request_id, "upstream": ex.upstream, "kind": failure.kind},
            )
            await out.body(error_event(failure.error.to_body()))
        self._account(ex, usage)
        await out.end()

    # -- accounting and the access log ------------------------------------------------------------
    def _account(self, ex: Exchange, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        ex.usage = usage
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        if isinstance(prompt, int):
            ex.prompt_tokens = prompt
            self._metrics.prompt_tokens.labels(ex.model, ex.tenant).inc(prompt)
        if isinstance(completion, int):
            ex.completion_tokens = completion
            self._metrics.completion_tokens.labels(ex.model, ex.tenant).inc(completion)

    def _finish(self, ex: Exchange) -> None:
        duration = time.perf_counter() - ex.started
        self._metrics.request_done(ex.model, ex.endpoint, ex.status, duration)
        access_log.info(
            "request",
            extra={
                "request_id": ex.request_id,
                "endpoint": ex.endpoint,
                "model": ex.model,
                "stream": ex.stream,
                "tenant": ex.tenant,
                "status": ex.status,
                "upstream": ex.upstream,
                "attempts": ex.attempts,
                "policy": ex.route.policy if ex.route else None,
                "reason": ex.route.reason if ex.route else None,
                "prompt_tokens": ex.prompt_tokens,
                "completion_tokens": ex.completion_tokens,
                "ttft_ms": None if ex.ttft is None else round(ex.ttft * 1000, 2),
                "duration_ms": round(duration * 1000, 2),
                "error": ex.error,
            },
        )


class _Responder:
    """Sends the response; knows whether anything has reached the client (then: no retry, no JSON error)."""

    __slots__ = ("_send", "finished", "started", "stream")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.stream = False
        self.finished = False

    async def start(self, status: int, ex: Exchange) -> None:
        self.started = self.stream = True
        headers = [(n, v) for n, v in ex.response_headers if n != b"content-length"]
        headers.append((b"cache-control", b"no-cache"))
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def body(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self) -> None:
        self.finished = True
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def whole(self, status: int, data: bytes, ex: Exchange) -> None:
        self.started = self.finished = True
        headers = [*ex.response_headers, (b"content-length", str(len(data)).encode())]
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def error(self, err: GatewayError, ex: Exchange) -> None:
        for name, value in err.headers.items():
            ex.response_headers.append((name.lower().encode(), value.encode()))
        await self.error_body(err.status, err.to_body(), ex)

    async def error_body(self, status: int, body: dict[str, Any], ex: Exchange) -> None:
        if self.finished:
            return
        if self.stream:
            # Mid-stream: the status line is gone; end the stream with an error event instead.
            await self.body(error_event(body))
            await self.end()
            return
        data = orjson.dumps(body)
        headers = [(n, v) for n, v in ex.response_headers if n != b"content-type"]
        ex.response_headers[:] = [*headers, (b"content-type", b"application/json")]
        await self.whole(status, data, ex)


async def _read_body(headers: dict[str, str], receive: Receive, limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"The request body exceeds {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"The request body exceeds {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _usage_of_body(data: bytes) -> dict[str, Any] | None:
    if b'"usage"' not in data:
        return None
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    usage = parsed.get("usage") if isinstance(parsed, dict) else None
    return usage if isinstance(usage, dict) else None


__all__ = ["DONE", "Exchange", "ProxyEndpoint"]
