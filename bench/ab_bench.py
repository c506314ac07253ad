"""Gateway CPU per request, A/B, interleaved: two (or more) gateways on one fake engine, loaded in turn.

    .venv/bin/python bench/ab_bench.py --side base=main --side cand=. [--rounds 5] [--seconds 8] [--out F]

A side is ``LABEL=SOURCE[@SERVER]``: SOURCE is ``.`` (this working tree), a directory laid out as
``service/`` (absolute or under ``.cache/``: e.g. one bench/compiled_build.py made), or a git ref
(its ``service/`` is extracted under ``.cache/ab/``); that directory is put first on the gateway's
``PYTHONPATH``;
SERVER is ``uvicorn`` (``python -m inferstack serve``, the default), ``granian`` (the same app
under Granian, bench/granian_serve.py) or ``vllm-router`` (the Rust router bench/reference_bench.py
measures against: ``-@vllm-router`` from the Makefile's ``.venv-ref``, which ``make bench-reference``
installs; ``IMAGE@vllm-router`` from an image ``make router-image`` built, bench/images/vllm-router).
``@uvicorn=COMMAND`` runs the gateway with another interpreter:
COMMAND is the command line that stands for ``python`` (``@uvicorn=/usr/bin/python3.11``, or one in
a chroot bench/chroot_python.sh made: ``@uvicorn=chroot /srv/py313 /opt/venv/bin/python``, with this
repository mounted at the same path inside). ``IMAGE@podman`` runs the gateway image ``IMAGE`` (bench/container.py).
Every side runs at once on core 0, idle but for the one being loaded; each round loads every side
in turn (the order rotating), with the stream phase (32 concurrent streams of 32 tokens) and the
non-stream phase (64 concurrent calls) of bench/gateway_bench.py. The figure is the CPU time (utime
+ stime, the gateway's process tree) per request: on a loaded machine it is far steadier than
latency, which this bench does not report.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path
from typing import Any

import container
import uvloop
from gateway_bench import REPO, TOKENS, closed_loop, cpu_seconds, start_fake_engine, start_gateway
from results_file import emit

from inferstack_devstack import Service, Stack, signals_stop

SERVERS = ("uvicorn", "granian", "vllm-router", "podman")


def _directory(source: str) -> Path | None:
    """A SOURCE naming a directory (absolute, or under the repository's ``.cache/``), else None."""
    if source.startswith((".cache/", "/")) and (REPO / source).is_dir():
        return (REPO / source).resolve()
    return None


def source_dir(source: str) -> Path:
    """The ``service/`` directory a side runs: this tree's, a directory's, or a git ref's extracted once."""
    if source == ".":
        return REPO / "service"
    directory = _directory(source)
    if directory is not None:
        return directory
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", source + "^{commit}"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    target = REPO / ".cache" / "ab" / sha[:12]
    if not (target / "service").is_dir():
        archive = subprocess.run(["git", "archive", sha, "service"], cwd=REPO, check=True, capture_output=True).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
    return target / "service"


def tree_cpu_seconds(pid: int) -> float:
    """CPU of ``pid`` and its children (Granian serves from a worker process)."""
    total = cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        total += tree_cpu_seconds(int(child))
    return total


def tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children, MiB."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total = int(line.split()[1]) / 1024
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        total += tree_rss_mib(int(child))
    return total


def parse_side(spec: str) -> tuple[str, str, str]:
    """``SOURCE[@SERVER[=COMMAND]]`` as (source, server, command): the server ``uvicorn`` if none."""
    source, _, server = spec.partition("@")
    server, _, interpreter = (server or "uvicorn").partition("=")
    return source, server, interpreter


def service_name(label: str) -> str:
    """The side's service (and, for an image, its container: ``container.name_for``)."""
    return f"gateway-{label}"


def is_image(spec: str) -> bool:
    """The side runs in a container: the gateway image (``IMAGE@podman``) or a router's (``IMAGE@vllm-router``)."""
    source, server, _ = parse_side(spec)
    return server == "podman" or (server == "vllm-router" and source != "-")


def measured_pid(spec: str, service: Service) -> int:
    """The process whose tree's CPU is the side's: the container's own for an image."""
    if is_image(spec):
        return container.main_pid(container.name_for(service.name))
    return service.process.pid


def start_side(stack: Stack, engine_url: str, label: str, spec: str) -> Service:
    source, server, interpreter = parse_side(spec)
    if server not in SERVERS:
        raise SystemExit(f"unknown server {server!r} in {label}={spec} (one of {', '.join(SERVERS)})")
    if server == "vllm-router":
        from reference_bench import start_router  # it imports this module

        router = REPO / ".venv-ref" / "bin" / "vllm-router"
        return start_router(stack, router, engine_url, service_name(label), None if source == "-" else source)
    if server == "podman":
        return start_gateway(stack, engine_url, name=service_name(label), env={"PYTHONHASHSEED": "0"}, image=source)
    python = shlex.split(interpreter) if interpreter else [sys.executable]
    argv = (
        [*python, "-m", "inferstack", "serve"]
        if server == "uvicorn"
        else [*python, str(REPO / "bench" / "granian_serve.py")]
    )
    env = {"PYTHONPATH": str(source_dir(source)), "PYTHONHASHSEED": "0"}
    return start_gateway(stack, engine_url, name=service_name(label), argv=argv, env=env)


async def phase(url: str, pid: int, stream: bool, seconds: float) -> float:
    concurrency = 32 if stream else 64
    cpu0 = tree_cpu_seconds(pid)
    _, served, _ = await closed_loop(url, concurrency, seconds, stream=stream)
    # closed_loop's warm-up requests also went through the gateway.
    return (tree_cpu_seconds(pid) - cpu0) / (served + concurrency) * 1e3


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "runs": [round(v, 4) for v in values],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", action="append", required=True, help="LABEL=SOURCE[@SERVER], two or more")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each measured phase")
    parser.add_argument("--note", default="", help="kept in the result: what the sides differ in")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sides = dict(s.split("=", 1) for s in args.side)
    # Resolved now: a branch may move, and this tree may change, while the bench runs.
    commits = {label: _commit(spec) for label, spec in sides.items()}
    stack = Stack(run_dir=REPO / ".cache" / "ab")
    cpu: dict[str, dict[str, list[float]]] = {label: {"stream": [], "call": []} for label in sides}
    load = [os.getloadavg()[0]]
    rss: dict[str, float] = {}
    try:
        engine = start_fake_engine(stack)
        running = {label: start_side(stack, engine.url, label, spec) for label, spec in sides.items()}
        pids = {label: measured_pid(sides[label], gw) for label, gw in running.items()}
        labels = list(sides)
        for round_ in range(args.rounds):
            order = labels[round_ % len(labels) :] + labels[: round_ % len(labels)]
            for label in order:
                gw = running[label]
                for kind, stream in (("stream", True), ("call", False)):
                    cpu[label][kind].append(uvloop.run(phase(gw.url, pids[label], stream, args.seconds)))
            load.append(os.getloadavg()[0])
            latest = ", ".join(f"{k} {v['stream'][-1]:.3f}/{v['call'][-1]:.3f}" for k, v in cpu.items())
            print(f"round {round_ + 1} (ms per stream/call): {latest}", file=sys.stderr)
        rss = {label: round(tree_rss_mib(pids[label]), 1) for label in running}
    finally:
        stack.stop()
        for label, spec in sides.items():
            if is_image(spec):
                container.remove(container.name_for(service_name(label)))
    result = {
        "command": ".venv/bin/python bench/ab_bench.py " + shlex.join(sys.argv[1:]),
        "note": args.note,
        "sides": {label: {"spec": spec, "commit": commits[label]} for label, spec in sides.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_average_1m": {"min": min(load), "max": max(load), "samples": load},
        "latency": "not reported: the machine was shared (load above); CPU time per request is what compares",
        "fake_engine_output_tokens": TOKENS,
        "cpu_ms_per_stream": {label: spread(v["stream"]) for label, v in cpu.items()},
        "cpu_ms_per_call": {label: spread(v["call"]) for label, v in cpu.items()},
        "rss_mib_after": rss,
    }
    emit(result, args.out)
    return 0


def _commit(spec: str) -> str:
    source, server, _ = parse_side(spec)
    if is_image(spec):
        return container.image_id(source)
    if server == "vllm-router":
        from reference_bench import ROUTER_VERSION

        return f"vllm-router {ROUTER_VERSION}"
    if _directory(source) is not None:
        return f"{source} (a directory)"
    ref = "HEAD" if source == "." else source
    out = subprocess.run(["git", "rev-parse", ref], cwd=REPO, capture_output=True, text=True).stdout.strip()
    if source == "." and subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "service"], cwd=REPO).returncode:
        out += " (+ uncommitted changes)"
    return out


if __name__ == "__main__":
    with signals_stop():  # SIGTERM stops the children too
        sys.exit(main())
