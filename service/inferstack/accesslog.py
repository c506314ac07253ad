"""Logging as JSON lines: one line per request on ``inferstack.access``; prompts and keys never logged."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, ClassVar, TextIO

import orjson

from .exchange import Exchange

access_log = logging.getLogger("inferstack.access")

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = record.__dict__.get("access")
        if isinstance(fields, dict):
            entry.update(fields)  # an access line: its fields, in order, without a walk over the record
        else:
            for key, value in record.__dict__.items():
                if key not in _STANDARD:
                    entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class JsonLinesHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """``configure_logging``'s handler: JSON lines on a stream, and access lines without a LogRecord.

    ``log_exchange`` hands it an access line directly (``access``) when it is the only handler that
    would see it: the same line ``JsonFormatter`` writes, without the dozen Python calls of
    ``Logger.info`` (record, handler chain, formatter) per request.

    With ``flush_interval`` > 0 access lines are written in batches, as Envoy's file access logs are
    (its flush interval defaults to 1 s): at most that many seconds or ``FLUSH_BYTES`` after the
    first line of a batch, and before any other record (lines stay in order) or at ``flush``
    (logging's shutdown at exit). One write per batch instead of one per request: the write was
    the biggest single cost of a non-stream call's access line. A process killed outright loses
    at most one interval's lines.
    """

    FLUSH_BYTES: ClassVar[int] = 64 * 1024

    def __init__(self, stream: TextIO, flush_interval: float = 0.0) -> None:
        super().__init__(stream)
        self.setFormatter(JsonFormatter())
        self._second = -1
        self._stamp = ""
        self._interval = flush_interval
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def access(self, fields: dict[str, Any]) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        # The line JsonFormatter would write ({"ts", "level", "logger", "msg", then the fields}),
        # its fixed head as text: one dict encoded instead of two built and merged.
        body = orjson.dumps(fields, default=str).decode()
        head = f'{{"ts":"{self._stamp}.{int((now - second) * 1000):03d}Z",{_ACCESS_HEAD}'
        line = head + ("," + body[1:] if len(body) > 2 else "}") + self.terminator
        if self._interval <= 0:
            with self.lock:  # type: ignore[union-attr]
                self.stream.write(line)
                self.stream.flush()
            return
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(line)
            self._pending_bytes += len(line)
        if self._pending_bytes >= self.FLUSH_BYTES:
            self._drain()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to flush later: now
            self._drain()
            return
        # A timer per batch, on the loop running now (one left on a loop that has closed never fires).
        if self._timer_loop is not loop:
            self._timer_loop = loop
            loop.call_later(self._interval, self._on_timer)

    def _on_timer(self) -> None:
        self._timer_loop = None
        self._drain()

    def _drain(self) -> None:
        """Write the batch of access lines, if any (from any thread: under the handler's lock)."""
        with self.lock:  # type: ignore[union-attr]
            if not self._pending:
                return
            text = "".join(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            self.stream.write(text)
            self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        self._drain()  # the access lines before it were written before it
        super().emit(record)

    def flush(self) -> None:
        self._drain()
        super().flush()

    @staticmethod
    def sole(logger: logging.Logger) -> JsonLinesHandler | None:
        """The handler when it alone would handle ``logger``'s INFO records, unfiltered; else None."""
        node: logging.Logger | None = logger
        while node is not None and node is not logging.root:
            if node.handlers or node.filters or not node.propagate:
                return None
            node = node.parent
        root = logging.root
        if root.filters or len(root.handlers) != 1:
            return None
        handler = root.handlers[0]
        if type(handler) is not JsonLinesHandler or handler.filters or handler.level > logging.INFO:
            return None
        return handler


_ACCESS_HEAD = orjson.dumps({"level": "info", "logger": "inferstack.access", "msg": "request"}).decode()[1:-1]


def configure_logging(level: str, access_flush_interval: float = 0.0) -> None:
    handler = JsonLinesHandler(sys.stderr, access_flush_interval)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Every record (one access line per request at least) would otherwise walk the stack for its
    # caller and look up its thread and process: fields the JSON lines never show (logging's
    # documented "Optimization" switches).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # aiohttp and uvicorn log connection noise at info; our access log replaces uvicorn's.
    for name in ("uvicorn.access", "aiohttp.access"):
        logging.getLogger(name).disabled = True


def log_exchange(ex: Exchange, duration: float) -> None:
    """The request's access-log line (its fields under one ``extra`` key: logging copies each key onto
    the record, and the formatter would walk them all again)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    fields = {
        "request_id": ex.request_id,
        "upstream_request_id": ex.upstream_id,
        "endpoint": ex.endpoint,
        "model": ex.model,
        "stream": ex.stream,
        "tenant": ex.tenant,
        "status": ex.status,
        "upstream": ex.upstream,
        "attempts": ex.attempts,
        "policy": ex.route.policy if ex.route else None,
        "reason": ex.route.reason if ex.route else None,
        "prefix_blocks": ex.route.prefix_blocks if ex.route else None,
        "prompt_tokens": ex.prompt_tokens,
        "completion_tokens": ex.completion_tokens,
        "ttft_ms": None if ex.ttft is None else round(ex.ttft * 1000, 2),
        "duration_ms": round(duration * 1000, 2),
        "error": ex.error,
    }
    handler = JsonLinesHandler.sole(access_log)
    if handler is not None:
        handler.access(fields)
    else:
        access_log.info("request", extra={"access": fields})
