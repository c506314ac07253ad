"""The relay's own CPU per stream, in one process, without sockets: A/B between source trees.

    .venv/bin/python bench/relay_micro.py --side main=main --side p1=. [--rounds 7] [--streams 3000]

Each side runs ``relay.relay_stream`` (SOURCE as in bench/ab_bench.py) over ``--streams`` canned
streams like the fake engine's (a role chunk, 32 content chunks, the usage chunk, ``[DONE]``, one
upstream read each, or one sink call each where the relay follows the response) into a Responder
on a real uvicorn ``RequestResponseCycle`` whose transport's ``write`` does nothing: what is measured
is the gateway's per-event code (splitting, usage and text detection, TTFT/ITL, timers, the writes
and sends it makes, the wake-ups it needs), not the sockets, the parsers or the kernel. Process CPU
time only, in a fresh process per side and round, the sides interleaved: far less sensitive to
other load on the machine than bench/ab_bench.py, and blind to what that one measures (the real
server and client).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from ab_bench import _commit, source_dir, spread
from gateway_bench import REPO, TOKENS
from results_file import emit

CHILD = r"""
import asyncio, logging, sys, time
import uvloop
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
from inferstack.exchange import Exchange, Responder
from inferstack.metrics.gateway import GatewayMetrics
from inferstack.relay.relay import relay_stream
from inferstack.upstream.client import Reply

HEAD = (b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"fake-model",'
        b'"choices":[{"index":0,')
ROLE = HEAD + b'"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n'
WORD = HEAD + b'"delta":{"content":"far "},"logprobs":null,"finish_reason":null}]}\n\n'
USAGE = (b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"fake-model","choices":[],'
         b'"usage":{"prompt_tokens":7,"total_tokens":39,"completion_tokens":32}}\n\n')
CHUNKS = [ROLE, *[WORD] * TOKENS, USAGE, b"data: [DONE]\n\n"]


class Response:
    # Both shapes: aiohttp's (content.readany, before the lean client) and the lean client's
    # (readany; follow: chunks handed to the sink as they arrive, as data_received would).

    def __init__(self) -> None:
        self.chunks = iter(CHUNKS[1:])
        self.content = self
        self.sink = None
        self.buffered = False

    def follow(self, sink) -> None:
        self.sink = sink

    async def readany(self) -> bytes:
        await asyncio.sleep(0)  # the wake-up a real read costs
        for chunk in self.chunks:
            if self.sink is None or not self.sink(chunk):
                self.sink = None
                return chunk
        return b""


class Transport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


class Flow:
    write_paused = False


def cycle() -> RequestResponseCycle:
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    return RequestResponseCycle(scope, Transport(), Flow(), logging.getLogger("x"), logging.getLogger("x"), False,
                                [], asyncio.Event(), False, True, lambda: None)


async def main(streams: int) -> float:
    metrics = GatewayMetrics()
    started = time.process_time()
    for i in range(streams):
        ex = Exchange(request_id=str(i), upstream_id=str(i), endpoint="chat", started=time.perf_counter(),
                      model="fake-model", stream=True, wants_usage=False, deadline=time.monotonic() + 600)
        await relay_stream(Reply(Response(), CHUNKS[0], True), ex, Responder(cycle().send), metrics, 30.0, 30.0)
        assert ex.completion_tokens == TOKENS
    return (time.process_time() - started) / streams * 1e6


print(uvloop.run(main(int(sys.argv[1]))))
""".replace("TOKENS", str(TOKENS))


def one(source: str, streams: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(source_dir(source)), "PYTHONHASHSEED": "0"}
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(streams)], env=env, cwd=REPO, check=True, capture_output=True, text=True
    )
    return float(run.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", action="append", required=True, help="LABEL=SOURCE, two or more")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--streams", type=int, default=3000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sides = dict(s.split("=", 1) for s in args.side)
    commits = {label: _commit(source) for label, source in sides.items()}
    us: dict[str, list[float]] = {label: [] for label in sides}
    load = [os.getloadavg()[0]]
    labels = list(sides)
    for round_ in range(args.rounds):
        for label in labels[round_ % len(labels) :] + labels[: round_ % len(labels)]:
            us[label].append(one(sides[label], args.streams))
        load.append(os.getloadavg()[0])
    result = {
        "command": ".venv/bin/python bench/relay_micro.py " + shlex.join(sys.argv[1:]),
        "sides": {label: {"source": source, "commit": commits[label]} for label, source in sides.items()},
        "load_average_1m": {"min": min(load), "max": max(load), "samples": load},
        "what": "process CPU microseconds per relayed 32-token stream, relay code only (no sockets, send is a no-op)",
        "us_per_stream": {label: spread(v) for label, v in us.items()},
        "median_ratio": {
            label: round(statistics.median(v) / statistics.median(us[labels[0]]), 3) for label, v in us.items()
        },
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
