"""The native relay device (bench/native_relay/fastrelay.c) does what the Python path it stands in for does.

bench/ablation_build.py's ``native`` variant is measured against the gateway as it is, so its reads
must be taken and declined exactly where the Python path takes and declines them, and counted the
same: otherwise the comparison measures different work.
"""

from __future__ import annotations

import importlib.util
import random
import re
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from inferstack.relay.sse import whole_events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import native_build

EVENTS = [
    b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n',
    b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n',
    b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n',
    b'data: {"choices":[{"text":"x"}]}\n\n',
    b'data: {"choices":[{"text":""}]}\n\n',
    b'data: {"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}\n\n',
    b'data: {"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}\n\n',
    b"data: [DONE]\n\n",
    b'data: {"error":{"message":"x"}}\n\n',
    b'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\n',
    b"data: x\r\n\r\n",
    b'data: {"choices":[{"delta":{"content":"no end"}}]}\n',
]


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    path = native_build.build(tmp_path_factory.mktemp("fastrelay"))
    spec = importlib.util.spec_from_file_location("_fastrelay", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference(data: bytes) -> int:
    """The Python path's verdict on a read: llhttp's chunk framing (hex sizes only), then
    ``whole_events`` on each chunk; -1 for anything the relay's fast path would decline."""
    pos, total = 0, 0
    while pos < len(data):
        size_line = re.match(rb"([0-9a-fA-F]{1,7})\r\n", data[pos:])
        if size_line is None or int(size_line[1], 16) == 0:
            return -1
        size = int(size_line[1], 16)
        pos += size_line.end()
        if data[pos + size : pos + size + 2] != b"\r\n" or pos + size + 2 > len(data):
            return -1
        texts = whole_events(data[pos : pos + size])
        if texts < 0:
            return -1
        total += texts
        pos += size + 2
    return total


def test_it_takes_and_counts_exactly_the_reads_the_python_path_takes(native: ModuleType) -> None:
    rng = random.Random(21)
    taken = 0
    for _ in range(50_000):
        chunks = []
        for _ in range(rng.randint(1, 3)):
            payload = b"".join(rng.choice(EVENTS) for _ in range(rng.randint(1, 2)))
            size = (b"%x" if rng.random() < 0.7 else b"%X") % len(payload)
            chunks.append(b"%b\r\n%b\r\n" % (size, payload))
        data = b"".join(chunks)
        cut = rng.random()
        if cut < 0.2:
            drop = rng.randrange(len(data))
            data = data[:drop] + data[drop + 1 :]
        elif cut < 0.3:
            data = data[: rng.randrange(1, len(data))]
        elif cut < 0.35:
            data += b"0\r\n\r\n"
        expected = reference(data)
        assert native.whole_chunks(data) == expected, data
        taken += expected >= 0
    assert 5_000 < taken < 45_000  # both verdicts well exercised


class _Clock:
    __slots__ = ("_gaps", "_itl", "_last", "sent_calls")

    def __init__(self) -> None:
        self._gaps: list[float] = []
        self._itl = SimpleNamespace(observe_all=lambda gaps: None, observe=lambda value, times: None)
        self._last: float | None = 1.0
        self.sent_calls = 0

    def sent(self, texts: int) -> None:
        self.sent_calls += 1


def test_a_taken_read_is_written_as_it_came_and_timed_and_a_paused_client_declines_it(native: ModuleType) -> None:
    written: list[bytes] = []
    flow = SimpleNamespace(write_paused=False)
    cycle = SimpleNamespace(disconnected=False)
    relay = SimpleNamespace(write_check=100.0, read_check=100.0, after_read=lambda now: None)
    ex = SimpleNamespace(texts_sent=0)
    clock = _Clock()
    now = [10.0]
    follower = native.Follower(written.append, lambda: now[0], flow, cycle, relay, ex, clock, 256)
    event = EVENTS[5]  # two texts
    read = b"%x\r\n%b\r\n" % (len(event), event)

    assert follower.feed(read) is True
    assert written == [read] and ex.texts_sent == 2 and len(clock._gaps) == 1

    flow.write_paused = True
    assert follower.feed(read) is False
    flow.write_paused, cycle.disconnected = False, True
    assert follower.feed(read) is False
    cycle.disconnected, now[0] = False, 100.0  # the write deadline needs moving: the Python path's
    assert follower.feed(read) is False
    assert follower.feed(read[:-1]) is False
    assert written == [read] and ex.texts_sent == 2
