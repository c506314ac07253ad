"""What the public listener costs per request, without sockets: uvicorn's protocol (ours on top)
against a bare llhttp parse and a task, on the same request bytes.

    .venv/bin/python bench/listener_micro.py [--requests 20000] [--rounds 5] [--source REF ...] [--out F]

Each ``--source`` (``.``, this tree, by default; or a git ref, extracted as bench/ab_bench.py does) is
run in its own process, the sources taking turns round after round. A round feeds one keep-alive
connection ``--requests`` times the bytes of a non-stream chat request (headers as aiohttp sends
them) and lets the app answer through ``Responder.whole`` (so: parse, scope, uvicorn's cycle and
task, our deadlines, the head, uvicorn's end of response); ``bare`` does what no server can do
without: llhttp's parse of the same bytes, a task per request, one write. The figure is CPU time
(``time.process_time``) per request, microseconds: the per-request cost a server of our own could
at best remove is the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nuser-agent: Python/3.11 aiohttp/3.13\r\n"
    b"accept: */*\r\naccept-encoding: gzip, deflate\r\ncontent-type: application/json\r\ncontent-length: 93\r\n\r\n"
    b'{"model":"fake-model","messages":[{"role":"user","content":"Say something."}],"max_tokens":4}'
)


class Transport:
    """The client's socket, as far as the protocol uses it."""

    def __init__(self) -> None:
        self.writes = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def listener(n: int) -> float:
    """CPU µs per request through uvicorn's protocol with the listener's defences, answered by ``Responder``."""
    import uvicorn
    from uvicorn.server import ServerState

    from inferstack.config import Listener
    from inferstack.exchange import Exchange, Responder
    from inferstack.listener import guarded_protocol

    ex = Exchange(request_id="r", upstream_id="u", endpoint="chat", started=0.0)
    ex.response_headers.append((b"content-type", b"application/json"))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await Responder(send).whole(200, b'{"ok":1}', ex)

    config = uvicorn.Config(app, loop="uvloop", lifespan="off", access_log=False, log_config=None, proxy_headers=False)
    config.load()
    state = ServerState()
    proto = guarded_protocol(Listener(), None)(config=config, server_state=state, app_state={})
    transport = Transport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    started = time.process_time()
    for _ in range(n):
        proto.data_received(REQUEST)
        for task in list(state.tasks):
            await task
    assert transport.writes == n and not transport.closing
    return (time.process_time() - started) / n * 1e6


async def bare(n: int) -> float:
    """CPU µs per request of a parse, a task and a write: what any server on this loop must do."""
    import httptools

    loop = asyncio.get_running_loop()
    transport = Transport()
    tasks: list[asyncio.Task[None]] = []

    async def answer(body: bytes) -> None:
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 8\r\n\r\n" + b'{"ok":1}')

    class Parse:
        body = b""

        def on_body(self, body: bytes) -> None:
            self.body += body

        def on_message_complete(self) -> None:
            tasks.append(loop.create_task(answer(self.body)))
            self.body = b""

    parser = httptools.HttpRequestParser(Parse())
    started = time.process_time()
    for _ in range(n):
        parser.feed_data(REQUEST)
        await tasks.pop()
    assert transport.writes == n
    return (time.process_time() - started) / n * 1e6


def child(n: int) -> None:
    import uvloop

    async def both() -> dict[str, float]:
        await listener(n // 10)  # warm
        return {"listener": await listener(n), "bare": await bare(n)}

    print(json.dumps(uvloop.run(both())))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--source", action="append", help="LABEL=SOURCE: '.' or a git ref (default: this tree)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.requests)
        return 0
    from ab_bench import _commit, source_dir
    from results_file import emit

    sources = dict(s.split("=", 1) for s in (args.source or ["tree=."]))
    figures: dict[str, dict[str, list[float]]] = {label: {"listener": [], "bare": []} for label in sources}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for label, source in sources.items():
            env = {**os.environ, "PYTHONPATH": str(source_dir(source))}
            argv = [sys.executable, __file__, "--child", "--requests", str(args.requests)]
            out = json.loads(subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout)
            for kind, value in out.items():
                figures[label][kind].append(round(value, 2))
        load.append(os.getloadavg()[0])
    result = {
        "command": ".venv/bin/python bench/listener_micro.py " + shlex.join(sys.argv[1:]),
        "sources": {label: {"spec": spec, "commit": _commit(spec)} for label, spec in sources.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_average_1m": {"min": min(load), "max": max(load), "samples": load},
        "cpu_us_per_request": {
            label: {kind: {"median": statistics.median(v), "runs": v} for kind, v in kinds.items()}
            for label, kinds in figures.items()
        },
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
