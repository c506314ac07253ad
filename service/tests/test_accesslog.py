"""The access line: one JSON object per request with its fields at the top level, nothing else added."""

from __future__ import annotations

import io
import logging

import orjson

from inferstack.accesslog import JsonFormatter, JsonLinesHandler, access_log, log_exchange
from inferstack.exchange import Exchange


def test_an_access_line_carries_the_exchange_fields_and_other_records_their_extras() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access_log.addHandler(handler)
    level, disabled = access_log.level, access_log.disabled
    access_log.setLevel(logging.INFO)  # setLevel: it clears the logger's cache of levels
    access_log.disabled = False
    try:
        ex = Exchange(request_id="r1", upstream_id="u1", endpoint="chat", started=0.0, model="m", status=200)
        log_exchange(ex, 0.0123)
        logging.getLogger("inferstack.access").warning("other", extra={"kind": "timeout"})
    finally:
        access_log.removeHandler(handler)
        access_log.setLevel(level)
        access_log.disabled = disabled
    line, other = (orjson.loads(text) for text in stream.getvalue().splitlines())
    assert list(line)[:4] == ["ts", "level", "logger", "msg"]
    assert line["msg"] == "request" and "access" not in line
    got = (line["request_id"], line["upstream_request_id"], line["status"], line["duration_ms"])
    assert got == ("r1", "u1", 200, 12.3)
    assert {"model", "tenant", "stream", "upstream", "attempts", "ttft_ms", "error"} <= set(line)
    assert other["kind"] == "timeout" and other["msg"] == "other"


def test_the_direct_access_line_is_the_formatters_line() -> None:
    """``configure_logging``'s handler writes access lines without a LogRecord when it alone sees
    them; with anything else in the way (a filter here) they go through logging: the same line."""
    stream = io.StringIO()
    handler = JsonLinesHandler(stream)
    root = logging.getLogger()
    saved, level, disabled = root.handlers[:], access_log.level, access_log.disabled
    root.handlers[:] = [handler]
    access_log.setLevel(logging.INFO)
    access_log.disabled = False
    ex = Exchange(request_id="r1", upstream_id="u1", endpoint="chat", started=0.0, model="m", status=200)
    try:
        assert JsonLinesHandler.sole(access_log) is handler
        log_exchange(ex, 0.0123)
        handler.addFilter(lambda record: True)
        assert JsonLinesHandler.sole(access_log) is None
        log_exchange(ex, 0.0123)
    finally:
        root.handlers[:] = saved
        access_log.setLevel(level)
        access_log.disabled = disabled
    direct, through_logging = (orjson.loads(text) for text in stream.getvalue().splitlines())
    assert list(direct) == list(through_logging)
    direct.pop("ts"), through_logging.pop("ts")
    assert direct == through_logging
