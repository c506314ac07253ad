"""CPU per read from the engine, in the gateway itself: what a stream's per-token path costs, per variant.

    .venv/bin/python bench/ablation_build.py
    .venv/bin/python bench/read_cost.py --side base=. --side native=.cache/ablation/native/service \
        --side relay=.cache/ablation/relay/service [--rounds 3] [--seconds 8] [--out F]

bench/ab_bench.py measures a whole process's CPU per stream, where a change to one step of thirty
reads is a few per cent, inside its rounds' spread. This bench measures the step alone: each
gateway's ``_Connection.data_received`` (the engine connection's callback that relays a followed
stream's read, the write to the client included) timed with the thread's CPU clock, summed over 32
concurrent 32-token streams on the fake engine (gateway_bench's closed loop: its 32 warm-up calls'
reads are in the sum too, about one read in 700), the sides loaded in turn. A side is ``LABEL=DIR``:
``.`` for this tree, or a directory laid out as ``service/`` (bench/ablation_build.py's variants),
whose ``sitecustomize.py`` runs first. The timer (a Python wrapper and two reads of the thread's
clock per call) adds the same cost on every side, so differences between sides are the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from gateway_bench import REPO, closed_loop, start_fake_engine, start_gateway
from results_file import emit

from inferstack_devstack import Stack

TIMING = """
import atexit, os, runpy, time
_side = os.environ.get("READ_COST_SIDE")
if _side:
    runpy.run_path(os.path.join(_side, "sitecustomize.py"))
from inferstack.upstream.client import _Connection

_received = _Connection.data_received
_total = [0.0, 0]

def _timed(self, data):
    start = time.thread_time()
    _received(self, data)
    _total[0] += time.thread_time() - start
    _total[1] += 1

_Connection.data_received = _timed

def _report():
    with open(os.environ["READ_COST_OUT"], "w") as out:
        out.write("%r %d" % (_total[0], _total[1]))

atexit.register(_report)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", action="append", required=True, help="LABEL=DIR (. for this tree)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sides = dict(side.split("=", 1) for side in args.side)
    work = REPO / ".cache" / "read_cost"
    work.mkdir(parents=True, exist_ok=True)
    (work / "sitecustomize.py").write_text(TIMING)
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in sides}
    for round_ in range(args.rounds):
        order = list(sides.items())
        order = order[round_ % len(order) :] + order[: round_ % len(order)]
        for label, source in order:
            stack = Stack(run_dir=work / "run")
            report = work / f"{label}.txt"
            report.unlink(missing_ok=True)
            env = {"READ_COST_OUT": str(report), "PYTHONPATH": str(work)}
            if source != ".":
                side = (REPO / source).resolve()
                env["READ_COST_SIDE"] = str(side)
                env["PYTHONPATH"] = os.pathsep.join((str(work), str(side)))
            try:
                engine = start_fake_engine(stack)
                gateway = start_gateway(stack, engine.url, name=f"gateway-{label}", env=env)
                _, streams, _ = asyncio.run(closed_loop(gateway.url, 32, args.seconds, stream=True))
            finally:
                stack.stop()
            seconds, reads = report.read_text().split()
            run = {
                "streams": streams,
                "reads": int(reads),
                "us_per_read": round(float(seconds) / int(reads) * 1e6, 2),
                "ms_per_stream": round(float(seconds) / streams * 1e3, 4),
            }
            runs[label].append(run)
            print(f"round {round_ + 1} {label}: {run}", flush=True)
    result = {
        "command": f".venv/bin/python bench/read_cost.py {shlex.join(sys.argv[1:])}",
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip(),
        "what": (
            "CPU (thread clock) in _Connection.data_received per read from the engine and per stream,"
            " 32 concurrent 32-token streams, fake engine"
        ),
        "load_average_1m": os.getloadavg()[0],
        "sides": sides,
        "us_per_read": {label: statistics.median(r["us_per_read"] for r in rs) for label, rs in runs.items()},
        "ms_per_stream": {label: statistics.median(r["ms_per_stream"] for r in rs) for label, rs in runs.items()},
        "runs": runs,
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
