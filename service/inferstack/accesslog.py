"""Logging as JSON lines: one line per request on ``inferstack.access``; prompts and keys never logged."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

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


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
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
    access_log.info(
        "request",
        extra={
            "access": {
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
        },
    )
