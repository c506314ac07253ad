"""One streamed chat completion over HTTP, timed, with every failure mapped to one kind.

Plain ``requests`` (locust's HttpUser would add its own request row, timed to the headers only).
Under locust, gevent makes the blocking reads cooperative. The exception classes are the rows of
locust's failure table: class name plus kind, e.g. ``HttpStatusError('http_503')``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.exceptions import ReadTimeoutError

from .profile import Timeouts
from .sse import SSEParser
from .timing import StreamTiming


class RequestFailed(Exception):
    @property
    def kind(self) -> str:
        return str(self.args[0])


class HttpStatusError(RequestFailed):
    """The server answered with an HTTP error status (http_429, http_503, ...)."""


class StreamErrorEvent(RequestFailed):
    """The stream carried an ``error`` event, or ended without ``data: [DONE]``."""


class RequestTimeout(RequestFailed):
    """No byte within the idle timeout, or the whole request exceeded the total timeout."""


class ConnectionFailed(RequestFailed):
    """The connection could not be made or broke mid-stream."""


@dataclass
class Exchange:
    timing: StreamTiming
    e2e: float  # request sent -> [DONE] (or the failure)
    failure: RequestFailed | None


def stream_chat(
    session: requests.Session, url: str, body: dict[str, Any], headers: dict[str, str], timeouts: Timeouts
) -> Exchange:
    timing = StreamTiming(sent_at=time.perf_counter())
    finished_at: float | None = None
    failure: RequestFailed | None = None
    try:
        with session.post(
            url, json=body, headers=headers, stream=True, timeout=(timeouts.connect, timeouts.idle)
        ) as response:
            if response.status_code >= 400:
                raise HttpStatusError(f"http_{response.status_code}")
            parser = SSEParser()
            # chunk_size=None: each chunk as it arrives, instead of waiting to fill a buffer.
            for chunk in response.iter_content(chunk_size=None):
                now = time.perf_counter()
                for event in parser.feed(chunk):
                    timing.observe(event, now)
                    if event.done:
                        finished_at = now
                if now - timing.sent_at > timeouts.total:
                    raise RequestTimeout("timeout_total")
            for event in parser.close():
                timing.observe(event, time.perf_counter())
            if timing.error is not None:
                raise StreamErrorEvent(f"stream_error:{timing.error}")
            if not timing.done:
                raise StreamErrorEvent("stream_incomplete")
    except RequestFailed as exc:
        failure = exc
    except requests.Timeout:
        failure = RequestTimeout("timeout_idle")
    except requests.ConnectionError as exc:
        # requests reports a read timeout mid-stream as a ConnectionError wrapping urllib3's error.
        timed_out = any(isinstance(arg, ReadTimeoutError) for arg in exc.args)
        failure = RequestTimeout("timeout_idle") if timed_out else ConnectionFailed("connection")
    except requests.exceptions.ChunkedEncodingError:
        failure = ConnectionFailed("connection")  # the server closed the connection mid-stream
    except requests.RequestException as exc:
        failure = ConnectionFailed(type(exc).__name__)
    return Exchange(timing, (finished_at or time.perf_counter()) - timing.sent_at, failure)
