"""The access line: one JSON object per request with its fields at the top level, nothing else added."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import orjson

from inferstack.accesslog import JsonFormatter, JsonLinesHandler, access_log, log_exchange
from inferstack.exchange import Exchange

from .waiting import until


@contextlib.contextmanager
def the_only_handler(handler: JsonLinesHandler) -> Iterator[None]:
    """``handler`` as the root logger's only one (as ``configure_logging`` leaves it), access lines on."""
    root = logging.getLogger()
    saved, level, disabled = root.handlers[:], access_log.level, access_log.disabled
    root.handlers[:] = [handler]
    access_log.setLevel(logging.INFO)  # setLevel: it clears the logger's cache of levels
    access_log.disabled = False
    try:
        yield
    finally:
        handler.flush()
        root.handlers[:] = saved
        access_log.setLevel(level)
        access_log.disabled = disabled


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
    ex = Exchange(request_id="r1", upstream_id="u1", endpoint="chat", started=0.0, model="m", status=200)
    with the_only_handler(handler):
        assert JsonLinesHandler.sole(access_log) is handler
        log_exchange(ex, 0.0123)
        handler.addFilter(lambda record: True)
        assert JsonLinesHandler.sole(access_log) is None
        log_exchange(ex, 0.0123)
    direct, through_logging = (orjson.loads(text) for text in stream.getvalue().splitlines())
    assert list(direct) == list(through_logging)
    direct.pop("ts"), through_logging.pop("ts")
    assert direct == through_logging


async def test_access_lines_are_written_in_batches_in_order() -> None:
    """With a flush interval, access lines wait for the batch's timer (or its size bound); any other
    record writes them first; ``flush`` (logging's shutdown) writes what is left."""
    stream = io.StringIO()
    handler = JsonLinesHandler(stream, flush_interval=0.05)

    def ids() -> list[str]:
        return [orjson.loads(t).get("request_id") or orjson.loads(t)["msg"] for t in stream.getvalue().splitlines()]

    with the_only_handler(handler):
        for n in (1, 2):
            log_exchange(Exchange(request_id=f"r{n}", upstream_id="u", endpoint="chat", started=0.0), 0.001)
        assert stream.getvalue() == "", "written at once: not batched"
        await until(lambda: ids() == ["r1", "r2"], "the batch written by its timer")

        log_exchange(Exchange(request_id="r3", upstream_id="u", endpoint="chat", started=0.0), 0.001)
        logging.getLogger("inferstack.gateway").warning("after r3")
        assert ids() == ["r1", "r2", "r3", "after r3"], "another record overtook a pending access line"

        log_exchange(Exchange(request_id="r4", upstream_id="u", endpoint="chat", started=0.0), 0.001)
        handler.flush()
        assert ids()[-1] == "r4"

        # The size bound: a batch of FLUSH_BYTES is written without waiting for the timer.
        stream.seek(0)
        stream.truncate()
        big = Exchange(request_id="x" * 2000, upstream_id="u", endpoint="chat", started=0.0)
        for _ in range(JsonLinesHandler.FLUSH_BYTES // 2000 + 1):
            log_exchange(big, 0.001)
        assert len(stream.getvalue()) >= JsonLinesHandler.FLUSH_BYTES, "a full batch waited for the timer"


def test_a_batch_left_on_a_closed_loop_does_not_hold_back_the_next_loops_lines() -> None:
    """A timer scheduled on a loop that closed never fires: the next loop's lines get their own."""
    stream = io.StringIO()
    handler = JsonLinesHandler(stream, flush_interval=0.05)

    async def one(request_id: str, wait_for: int) -> None:
        log_exchange(Exchange(request_id=request_id, upstream_id="u", endpoint="chat", started=0.0), 0.001)
        if wait_for:
            await until(lambda: stream.getvalue().count("\n") == wait_for, "the batch written by its timer")

    with the_only_handler(handler):
        asyncio.run(one("first", 0))  # its loop closes with the batch's timer pending
        asyncio.run(one("second", 2))


def test_the_documented_access_line_is_the_one_written() -> None:
    """docs/metrics.md's table names every field of the access line, in its order, and nothing else."""
    stream = io.StringIO()
    with the_only_handler(JsonLinesHandler(stream)):
        log_exchange(Exchange(request_id="r", upstream_id="u", endpoint="chat", started=0.0), 0.001)
    written = list(orjson.loads(stream.getvalue()))
    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    section = doc.split("## The access log", 1)[1]
    documented = [name for row in re.findall(r"^\| (`.+?) \|", section, re.M) for name in re.findall(r"`(\w+)`", row)]
    assert written == ["ts", "level", "logger", "msg", *documented]
