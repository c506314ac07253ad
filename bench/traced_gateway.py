"""The gateway with timestamps along one request's way, for bench/tail_breakdown.py (not for production).

    GATEWAY_TRACE_OUT=/path/trace.json python bench/traced_gateway.py

Runs ``inferstack serve`` with wrappers around the listener, the endpoint, the upstream pool and the
responder that note ``time.perf_counter()`` (CLOCK_MONOTONIC, comparable with the load generator's
clock on the same machine) per request, keyed by the client's ``X-Request-Id``:

    begin       the listener's parser saw the request's first bytes (``on_message_begin``)
    headers     its headers were parsed (``on_headers_complete``: uvicorn creates the request task)
    app         the request task ran the OpenAI endpoint
    send        the router handed the request to the upstream pool
    up_headers  the engine's status line and headers were parsed (``data_received``)
    up_body     the engine's first body bytes were parsed
    resp        the request task resumed with the upstream's headers
    write       the first bytes of the response were written to the client's socket

and, besides, the event loop's lag (a 5 ms sleep's overshoot) and every garbage collection's pause.
Whenever the file ``GATEWAY_TRACE_OUT + ".dump"`` appears, everything recorded so far is written
to ``GATEWAY_TRACE_OUT`` and forgotten (the trigger is removed). The wrappers cost a few
microseconds per request: they slow the gateway a little, so its figures are an upper bound.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

from inferstack import exchange, listener, server
from inferstack.api import openai
from inferstack.upstream import client

now = time.perf_counter
CURRENT: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("trace", default=None)
TRACES: dict[str, dict[str, float]] = {}
BY_RESPONDER: dict[int, dict[str, float]] = {}
LAGS: list[tuple[float, float]] = []
GC: list[tuple[float, float, int]] = []


def _wrap(cls: Any, name: str, before: Any = None, after: Any = None) -> None:
    original = getattr(cls, name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if before is not None:
            before(self)
        result = original(self, *args, **kwargs)
        if after is not None:
            after(self)
        return result

    setattr(cls, name, wrapper)


def _begin(proto: Any) -> None:
    proto._trace_begin = now()


def _headers(proto: Any) -> None:
    # Set before uvicorn's on_headers_complete creates the request task, which copies this context.
    CURRENT.set({"begin": getattr(proto, "_trace_begin", 0.0), "headers": now()})


def _start_watch(proto: Any) -> None:
    # Started with the first connection (the bench's readiness probe): the app's lifespan is not ours.
    if not _WATCH:
        _WATCH.append(asyncio.get_running_loop().create_task(_watch(Path(os.environ["GATEWAY_TRACE_OUT"]))))


_WATCH: list[asyncio.Task[None]] = []
_wrap(listener.GuardedProtocol, "connection_made", before=_start_watch)
_wrap(listener.GuardedProtocol, "on_message_begin", before=_begin)
_wrap(listener.GuardedProtocol, "on_headers_complete", before=_headers)

_endpoint_call = openai.OpenAIEndpoint.__call__


async def _endpoint(self: Any, scope: Any, receive: Any, send: Any) -> None:
    rec = CURRENT.get()
    if rec is not None:
        rec["app"] = now()
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                TRACES[value.decode()] = rec
    await _endpoint_call(self, scope, receive, send)


openai.OpenAIEndpoint.__call__ = _endpoint  # type: ignore[method-assign]

_post = client.Pool.post


async def _pool_post(self: Any, *args: Any, **kwargs: Any) -> Any:
    rec = CURRENT.get()
    if rec is not None:
        rec["send"] = now()
    resp = await _post(self, *args, **kwargs)
    if rec is not None:
        rec["resp"] = now()
    return resp


client.Pool.post = _pool_post  # type: ignore[method-assign]


def _conn_send(conn: Any) -> None:
    conn._trace = CURRENT.get()


def _conn_headers(conn: Any) -> None:
    rec = getattr(conn, "_trace", None)
    if rec is not None:
        rec["up_headers"] = now()


def _conn_body(conn: Any) -> None:
    rec = getattr(conn, "_trace", None)
    if rec is not None and "up_body" not in rec:
        rec["up_body"] = now()


_wrap(client._Connection, "send", before=_conn_send)
_wrap(client._Connection, "on_headers_complete", after=_conn_headers)
_wrap(client._Connection, "on_body", before=_conn_body)

_responder_init = exchange.Responder.__init__


def _responder(self: Any, send: Any) -> None:
    _responder_init(self, send)
    rec = CURRENT.get()
    if rec is not None:
        BY_RESPONDER[id(self)] = rec


exchange.Responder.__init__ = _responder  # type: ignore[method-assign]


def _wrote(self: Any) -> None:
    rec = BY_RESPONDER.pop(id(self), None)
    if rec is not None:
        rec["write"] = now()


for _name in ("write_now", "last", "whole", "body"):
    _wrap(exchange.Responder, _name, before=_wrote)


def _gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        GC.append((now(), 0.0, info["generation"]))
    elif GC:
        started, _, generation = GC[-1]
        GC[-1] = (started, now() - started, generation)


gc.callbacks.append(_gc)


async def _watch(out: Path) -> None:
    """The loop's lag every 5 ms; the dump when its trigger file appears (checked every 0.5 s)."""
    loop = asyncio.get_running_loop()
    trigger = Path(str(out) + ".dump")
    ticks = 0
    while True:
        due = loop.time() + 0.005
        await asyncio.sleep(0.005)
        LAGS.append((now(), loop.time() - due))
        ticks += 1
        if ticks % 100 == 0:
            _dump(out, trigger)


def _dump(out: Path, trigger: Path) -> None:
    # Blocking file calls on the loop, deliberately: a stat every 0.5 s, a write only between phases.
    if trigger.exists():
        data = {"requests": TRACES, "loop_lag": LAGS, "gc": GC, "gc_threshold": gc.get_threshold()}
        out.write_bytes(orjson.dumps(data))
        TRACES.clear()
        LAGS.clear()
        GC.clear()
        trigger.unlink()


if __name__ == "__main__":
    server.serve()
