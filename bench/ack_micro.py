"""What an ACK per read costs a reader of small segments on loopback, without the gateway.

    .venv/bin/python bench/ack_micro.py [--rounds 3] [--segments 4000] [--gap 0.001] [--out F]

A sender process (core 1) writes ``--segments`` 230-byte segments (a token chunk's size), one every
``--gap`` seconds, with TCP_NODELAY; the reader (core 0) reads them with blocking ``recv``. Its time
on the CPU (``/proc/self/schedstat``: exact, not sampled by ticks) per segment is taken two ways,
alternating: ``quick``, the socket as a stream's upstream connection is after the engine's first
silence (every small segment read is ACKed at once), and ``pingpong``, with ``TCP_QUICKACK=0`` after
the first read (the kernel ACKs every second one), as session 11's 0ee9b98 did in ``upstream/client.py``
at a stream's first body bytes (reverted: no end-to-end cut resolved; docs/performance.md). Linux
only. The per-segment figure includes the reader's sleep and wake-up for each segment, as the
gateway's own wake-ups are in its per-stream CPU.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time
from pathlib import Path
from typing import Any

from results_file import emit

SEGMENT = b"x" * 230


def on_cpu_ns() -> int:
    return int(Path("/proc/self/schedstat").read_text().split()[0])


def send(port: int, segments: int, gap: float) -> None:
    os.sched_setaffinity(0, {1})
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.recv(1)  # the reader is ready
        due = time.perf_counter()
        for _ in range(segments):
            s.sendall(SEGMENT)
            due += gap
            while time.perf_counter() < due:  # (spins: a sleep's wake-up would blur the gap)
                pass


def read(mode: str, segments: int, gap: float) -> dict[str, float]:
    """One run: (the reader's CPU per segment in us, reads per segment)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        child = os.fork()
        if child == 0:
            try:
                send(port, segments, gap)
            finally:
                os._exit(0)
        os.sched_setaffinity(0, {0})
        conn, _ = listener.accept()
    with conn:
        conn.sendall(b"g")
        got = reads = 0
        started = on_cpu_ns()
        while got < len(SEGMENT) * segments:
            data = conn.recv(65536)
            if not data:
                break
            if mode == "pingpong" and reads == 0:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
            got += len(data)
            reads += 1
        cpu = on_cpu_ns() - started
    os.waitpid(child, 0)
    return {"cpu_us_per_segment": cpu / segments / 1e3, "reads_per_segment": reads / segments}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--segments", type=int, default=4000)
    parser.add_argument("--gap", type=float, default=0.001)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"quick": [], "pingpong": []}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for mode in runs:
            runs[mode].append(read(mode, args.segments, args.gap))
        load.append(os.getloadavg()[0])
    result: dict[str, Any] = {
        "command": "bench/ack_micro.py " + f"--rounds {args.rounds} --segments {args.segments} --gap {args.gap}",
        "load_average_1m": {"min": min(load), "max": max(load), "samples": load},
        "cpu_us_per_segment": {
            mode: {
                "median": round(statistics.median(r["cpu_us_per_segment"] for r in rs), 2),
                "runs": [round(r["cpu_us_per_segment"], 2) for r in rs],
            }
            for mode, rs in runs.items()
        },
        "reads_per_segment": {mode: [round(r["reads_per_segment"], 2) for r in rs] for mode, rs in runs.items()},
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
