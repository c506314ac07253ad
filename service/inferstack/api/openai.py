"""The hot path: ``POST /v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings``.

A raw ASGI endpoint, dispatched by ``app.GatewayApp`` before FastAPI's middleware, so that a request
pays for none of FastAPI's per-request machinery. The pipeline, one way:

    read body -> validate -> filters.admit (auth, limits, cache) -> router (schedule, hold, attempt,
    retry) -> relay -> filters.finish (accounting) -> access log
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal

import orjson
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from ..accesslog import log_exchange
from ..catalog import Catalog
from ..config import Settings
from ..errors import GatewayError, internal_error_body
from ..exchange import ClientStalled, Exchange, Responder
from ..filters import Tenancy
from ..filters.tenancy import REQUEST_HEADERS as TENANCY_HEADERS
from ..metrics.gateway import GatewayMetrics
from ..router.router import Router
from ..scheduling.scheduler import OVERRIDE_HEADER, SESSION_HEADER
from ..types import Receive, Scope, Send
from ..upstream.cluster import Cluster
from .request import PATHS, ClientGone, read_body, validate, wait_disconnect

log = logging.getLogger("inferstack.api")
# The request headers the pipeline reads besides the tenancy filters' (``Exchange.request_headers``):
# the body's length, the client's request id, the scheduler's. No other is decoded.
READ_HEADERS = frozenset({b"content-length", b"x-request-id", OVERRIDE_HEADER.encode(), SESSION_HEADER.encode()})


class _Disconnect:
    """uvicorn's per-request ``message_event`` once the body is in: it also calls ``left`` when the
    connection is lost (uvicorn sets the event then, with ``disconnected``). Instead of a task per
    request waiting for the disconnect message: no task to create, step and cancel."""

    __slots__ = ("_cycle", "_event", "_left")

    def __init__(self, cycle: RequestResponseCycle, left: Callable[[], None]) -> None:
        self._cycle = cycle
        self._event = cycle.message_event
        self._left = left
        cycle.message_event = self  # type: ignore[assignment]

    def detach(self) -> None:
        """uvicorn's own event back: no reference cycle (cycle -> this -> cycle) left for the
        collector, which would otherwise hold every request's objects until it runs."""
        self._cycle.message_event = self._event

    def set(self) -> None:
        self._event.set()
        if self._cycle.disconnected:
            self._left()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> Literal[True]:
        return await self._event.wait()


class OpenAIEndpoint:
    def __init__(
        self,
        kind: str,
        settings: Settings,
        cluster: Cluster,
        router: Router,
        tenancy: Tenancy,
        metrics: GatewayMetrics,
        catalog: Catalog | None = None,
    ) -> None:
        self.kind = kind
        self.path = PATHS[kind]
        self._max_body = settings.max_body_bytes
        self._cluster = cluster
        self._router = router
        self._tenancy = tenancy
        self._metrics = metrics
        self._catalog = catalog
        # Request ids: a random prefix and a counter; uuid4 costs a syscall per request.
        self._id_prefix = secrets.token_hex(8)
        self._id_counter = itertools.count(1)

    def _new_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        # One pass over the headers: those the pipeline reads, decoded; the tenancy filters' as they are.
        headers: dict[str, str] = {}
        theirs: list[tuple[bytes, bytes]] = []
        for pair in scope["headers"]:
            name = pair[0]
            if name in READ_HEADERS:
                headers[name.decode("latin-1")] = pair[1].decode("latin-1")
            elif name in TENANCY_HEADERS:
                theirs.append(pair)
        ours = self._new_request_id()
        client_id = headers.get("x-request-id")
        ex = Exchange(
            request_id=client_id[:128] if client_id else ours,
            upstream_id=ours,
            endpoint=self.kind,
            started=started,
            request_headers=headers,
        )
        ex.response_headers.append((b"x-request-id", ex.request_id.encode("latin-1", "replace")))
        out = Responder(send)
        task = asyncio.current_task()
        assert task is not None
        watcher: asyncio.Task[None] | None = None
        watch: _Disconnect | None = None
        cancelled_by_client = done = False

        def client_left() -> None:
            nonlocal cancelled_by_client
            if not (done or cancelled_by_client or out.finished):
                cancelled_by_client = True
                task.cancel()

        try:
            body = await read_body(ex.request_headers, receive, self._max_body)
            # From here on, a disconnect cancels the request, and with it the upstream call.
            if out.cycle is not None:
                watch = _Disconnect(out.cycle, client_left)
            else:  # another server: a task waits for the disconnect message
                watcher = asyncio.create_task(wait_disconnect(receive))
                watcher.add_done_callback(lambda watch: None if watch.cancelled() else client_left())
            payload = validate(self.kind, body)
            if self._catalog is not None:
                # An alias becomes its model, an adapter one of its versions (weighted rollout), before
                # anything (keys, limits, prices, routing, the engine) sees the name.
                resolved = self._catalog.resolve(payload["model"], random.random())
                if resolved is not None and resolved != payload["model"]:
                    payload["model"] = resolved
                    body = orjson.dumps(payload)
            ex.stream, ex.payload, ex.body = payload.get("stream") is True, payload, body
            model = payload["model"]
            known = model in self._cluster.known_models
            admission = ex.admission = await self._tenancy.admit(
                self.kind, payload, body, theirs, self._cluster.revision(model), known
            )
            ex.model = model  # known: admit refuses unknown models before anything is recorded
            ex.tenant = admission.tenant_label
            ex.response_headers.extend(admission.headers)
            try:
                if admission.cached is not None:
                    await self._replay(payload, ex, out)
                else:
                    await self._router.forward(self.path, payload, ex, out)
            finally:
                # No attempt (a 400 on the routing override, a 503 after the hold): no tokens spent.
                await self._tenancy.finish(
                    admission, status=ex.status, usage=ex.usage, response=ex.whole, reached_upstream=ex.attempts > 0
                )
        except ClientGone:
            ex.status = 499
        except ClientStalled:
            ex.status, ex.error = 499, "client_write_timeout"
        except asyncio.CancelledError:
            if not cancelled_by_client:
                raise
            task.uncancel()
            ex.status, ex.error = 499, "client_disconnect"
            self._metrics.upstream_errors.labels(ex.model, "client_disconnect").inc()
        except GatewayError as err:
            ex.status, ex.error = err.status, err.code or err.type
            if err.tenant is not None:
                ex.tenant = err.tenant
            await out.error(err, ex)
        except Exception:
            log.exception("request failed", extra={"request_id": ex.request_id})
            ex.status, ex.error = 500, "internal_error"
            await out.error_body(500, internal_error_body(), ex)
        finally:
            done = True
            if watch is not None:
                watch.detach()
            if watcher is not None:
                watcher.cancel()
            duration = time.perf_counter() - ex.started
            self._metrics.request_done(ex.model, ex.endpoint, ex.status, duration)
            log_exchange(ex, duration)

    async def _replay(self, payload: dict[str, Any], ex: Exchange, out: Responder) -> None:
        """A cache hit or an Idempotency-Key replay: the stored answer, as JSON or as a stream."""
        adm = ex.admission
        assert adm is not None and adm.cached is not None
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
