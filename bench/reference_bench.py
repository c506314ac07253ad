"""The gateway against issue 13's yardstick, vllm-router (Rust), on the same machine, interleaved.

    make bench-reference    # .venv/bin/python bench/reference_bench.py --router .venv-ref/bin/vllm-router
    make bench-reference IMAGE=localhost/inferstack/gateway:bench   # the gateway image instead (--image)
    make bench-reference IMAGE=... ROUTER_IMAGE=localhost/bench/vllm-router:0.1.17   # both as images

Issue 13 set its CPU targets next to vllm-router measured on the machine it was written on
(0.9-1.2 ms per 32-token stream, 0.13-0.15 ms per non-stream call; targets 1.5 and 0.3 ms). The VMs
this repo runs on differ by 2x in CPU cost per request, so an absolute figure from another VM says
little; the same Rust router measured here, in the same rounds, does. This bench starts one fake
engine (core 1, with the load generator), our gateway and vllm-router (both pinned to core 0, idle
but for the one being loaded), and loads them in turn, the order alternating, with bench/gateway_bench.py's
phases: 32 concurrent streams, 64 concurrent non-stream calls, 256 concurrent streams. Per round it
keeps each proxy's CPU per request (its process tree's utime + stime) and added TTFT (its quantile
minus the direct path's, measured in the same round); the verdict compares the median ratio
gateway/vllm-router with the ratio the issue's targets imply (target / the issue's vllm-router
figure: a range, from the two ends of that figure). Latency needs a quiet machine; the ratios of CPU
much less so.

Which gateway: by default this tree on this ``.venv``'s interpreter, a development build (here
pyenv's CPython, compiled without profile-guided or link-time optimisation); with ``--image``, the
gateway image run with podman on core 0 (bench/container.py), i.e. with the interpreter its base
ships. The result names which (``gateway``). Which router: by default the ``--router`` launcher on
this host; with ``--router-image``, vllm-router's PyPI wheel in a container on the same base and
runtime (bench/images/vllm-router, ``make router-image``), so that an image is compared with an
image: the same syscall filter, cgroup and network path on both sides (``reference``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import container
import uvloop
from ab_bench import _commit, spread, tree_cpu_seconds, tree_rss_mib
from gateway_bench import REPO, TOKENS, added, closed_loop, pinned, start_fake_engine, start_gateway
from results_file import emit

from inferstack_devstack import Service, Stack, free_port, signals_stop

ROUTER_VERSION = "0.1.17"  # pinned in the Makefile's .venv-ref
# The issue's vllm-router figures (ms of CPU per request) and targets for the same quantity.
ISSUE = {
    "cpu_ms_per_stream": {"reference": (0.9, 1.2), "target": 1.5, "stretch": 0.8},
    "cpu_ms_per_call": {"reference": (0.13, 0.15), "target": 0.3},
}


# (name, concurrency, stream, max_tokens): 1-token streams split a stream's cost into a part per
# request and a part per token (the 31 more events of a 32-token stream).
PHASES = (
    ("streams_32", 32, True, None),
    ("streams_32_1_token", 32, True, 1),
    ("calls_64", 64, False, None),
    ("streams_256", 256, True, None),
)


def start_router(
    stack: Stack, router: Path, engine_url: str, name: str = "vllm-router", image: str | None = None
) -> Service:
    """vllm-router on core 0 in front of ``engine_url``: ``router`` (a venv's launcher) or, with ``image``,
    that container (bench/images/vllm-router, bench/container.py), ready."""
    port = free_port()
    args = ["--host", "127.0.0.1", "--port", str(port), "--worker-urls", engine_url]
    # round_robin: one engine, so the policy is moot; the metrics port is moved off its fixed default.
    args += ["--policy", "round_robin", "--prometheus-port", str(free_port()), "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    if image is not None:
        command = container.run_argv(image, container.name_for(name), {}, 0, tuple(args))
        service = stack.start(name, command, url, container.ENV)
    else:
        service = stack.start(name, pinned(0, [str(router), *args]), url)
    stack.wait_ready(service, "/health", 60 if image is None else 90)
    return service


async def round_(
    engine: str, proxies: dict[str, Service], pids: dict[str, int], order: list[str], seconds: float
) -> dict[str, Any]:
    """One round: the direct path, then each proxy in ``order``, for each phase (``pids``: whose CPU)."""
    out: dict[str, Any] = {label: {} for label in proxies}
    for name, concurrency, stream, tokens in PHASES:
        direct, _, _ = await closed_loop(engine, concurrency, seconds, stream, tokens)
        for label in order:
            pid = pids[label]
            cpu0 = tree_cpu_seconds(pid)
            ttft, served, _ = await closed_loop(proxies[label].url, concurrency, seconds, stream, tokens)
            # closed_loop's warm-up requests (one per worker) also went through the proxy.
            cpu_ms = (tree_cpu_seconds(pid) - cpu0) / (served + concurrency) * 1e3
            out[label][name] = {"cpu_ms_per_request": round(cpu_ms, 4), "requests": served}
            if stream:
                out[label][name]["added_ttft_ms"] = {
                    "p50": round(added(direct, ttft, 0.5), 3),
                    "p99": round(added(direct, ttft, 0.99), 3),
                }
    return out


def router_version(router: Path, image: str | None) -> str:
    """The vllm-router version measured: the image's label (bench/images/vllm-router), else the launcher's venv's."""
    if image is not None:
        labels = json.loads(container.image_id(image).split(" ", 1)[1])
        return str(labels["org.inferstack.vllm-router-version"])
    if not router.exists():
        raise SystemExit(f"{router} not found: `make bench-reference` installs vllm-router {ROUTER_VERSION}")
    return subprocess.run(
        [str(router.parent / "python"), "-c", "import importlib.metadata as m; print(m.version('vllm-router'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()


def verdict(ratios: list[float], what: str) -> dict[str, Any]:
    """The median ratio gateway/vllm-router next to the ratios the issue's target implies.

    The issue gives its router's cost as a range (low..high ms), so its target is a range of ratios:
    target/high (had its router cost the most) up to target/low. "met" says where the median lies."""
    issue = ISSUE[what]
    low, high = issue["reference"]
    mid = (low + high) / 2
    bounds = {"router_at_high": issue["target"] / high, "router_at_mid": issue["target"] / mid}
    bounds["router_at_low"] = issue["target"] / low
    median = statistics.median(ratios)
    met = next((name for name, bound in bounds.items() if median <= bound), "no")
    row: dict[str, Any] = {
        "ratio_gateway_to_router": spread(ratios),
        "issue_target_ms": issue["target"],
        "issue_router_ms": [low, high],
        "target_ratio": {name: round(bound, 2) for name, bound in bounds.items()},
        # router_at_high: met whatever the issue's router cost within its range; router_at_mid: met
        # at the middle of the range; router_at_low: only if it cost the least; no: not even then.
        "met": met,
    }
    if "stretch" in issue:
        row["stretch_ratio"] = [round(issue["stretch"] / high, 2), round(issue["stretch"] / low, 2)]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--router", type=Path, default=REPO / ".venv-ref" / "bin" / "vllm-router")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each measured phase")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--image",
        help="measure this gateway image (podman, bench/container.py) instead of the gateway on this .venv's Python",
    )
    parser.add_argument(
        "--router-image",
        help="run vllm-router from this image (bench/images/vllm-router: make router-image) instead of --router",
    )
    args = parser.parse_args()
    version = router_version(args.router, args.router_image)
    commit = _commit(".")  # now: the tree may change while the bench runs
    stack = Stack(run_dir=REPO / ".cache" / "reference")
    rounds: list[dict[str, Any]] = []
    load = [os.getloadavg()[0]]
    try:
        engine = start_fake_engine(stack)
        proxies = {
            "gateway": start_gateway(stack, engine.url, image=args.image),
            "vllm_router": start_router(stack, args.router, engine.url, image=args.router_image),
        }
        pids = {label: p.process.pid for label, p in proxies.items()}
        if args.image:
            pids["gateway"] = container.main_pid(container.name_for(proxies["gateway"].name))
        if args.router_image:
            pids["vllm_router"] = container.main_pid(container.name_for(proxies["vllm_router"].name))
        labels = list(proxies)
        for n in range(args.rounds):
            order = labels if n % 2 == 0 else labels[::-1]
            rounds.append(uvloop.run(round_(engine.url, proxies, pids, order, args.seconds)))
            load.append(os.getloadavg()[0])
            r = rounds[-1]
            line = ", ".join(
                f"{k} {r[k]['streams_32']['cpu_ms_per_request']:.3f}/{r[k]['calls_64']['cpu_ms_per_request']:.3f}"
                for k in labels
            )
            print(f"round {n + 1} (CPU ms per stream/call): {line}; load {load[-1]:.1f}", file=sys.stderr)
        rss = {label: round(tree_rss_mib(pid), 1) for label, pid in pids.items()}
    finally:
        stack.stop()
        # The services' default names: proxies may not exist.
        if args.image:
            container.remove(container.name_for("gateway"))
        if args.router_image:
            container.remove(container.name_for("vllm-router"))

    def series(label: str, phase: str, *key: str) -> list[float]:
        values = []
        for r in rounds:
            value: Any = r[label][phase]
            for k in key:
                value = value[k]
            values.append(float(value))
        return values

    def cpu_by_label(phase: str) -> dict[str, Any]:
        return {label: spread(series(label, phase, "cpu_ms_per_request")) for label in ("gateway", "vllm_router")}

    def ratios(phase: str) -> list[float]:
        gw = series("gateway", phase, "cpu_ms_per_request")
        ref = series("vllm_router", phase, "cpu_ms_per_request")
        return [round(g / r, 3) for g, r in zip(gw, ref, strict=True)]

    where = f", in the image {args.router_image} ({container.image_id(args.router_image)})" if args.router_image else ""
    result = {
        "command": "make bench-reference  # .venv/bin/python bench/reference_bench.py " + shlex.join(sys.argv[1:]),
        "commit": commit,
        "gateway": (
            f"the image {args.image} ({container.image_id(args.image)})"
            if args.image
            else f"this tree on {sys.executable} (Python {platform.python_version()})"
        ),
        "reference": f"vllm-router {version} (PyPI wheel, Rust), --policy round_robin, one worker{where}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_average_1m": {"min": min(load), "max": max(load), "samples": load},
        "fake_engine_output_tokens": TOKENS,
        "cpu_ms_per_stream": {
            "gateway": spread(series("gateway", "streams_32", "cpu_ms_per_request")),
            "vllm_router": spread(series("vllm_router", "streams_32", "cpu_ms_per_request")),
            **verdict(ratios("streams_32"), "cpu_ms_per_stream"),
        },
        "cpu_ms_per_call": {
            "gateway": spread(series("gateway", "calls_64", "cpu_ms_per_request")),
            "vllm_router": spread(series("vllm_router", "calls_64", "cpu_ms_per_request")),
            **verdict(ratios("calls_64"), "cpu_ms_per_call"),
        },
        # A 32-token stream minus a 1-token one: the cost of 31 more tokens' events, per token.
        "cpu_us_per_extra_token": {
            label: spread(
                [
                    (a - b) / (TOKENS - 1) * 1e3
                    for a, b in zip(
                        series(label, "streams_32", "cpu_ms_per_request"),
                        series(label, "streams_32_1_token", "cpu_ms_per_request"),
                        strict=True,
                    )
                ]
            )
            for label in ("gateway", "vllm_router")
        },
        "cpu_ms_per_1_token_stream": cpu_by_label("streams_32_1_token"),
        "cpu_ms_per_stream_at_256": cpu_by_label("streams_256"),
        "added_ttft_ms": {
            label: {
                "p50_at_32": spread(series(label, "streams_32", "added_ttft_ms", "p50")),
                "p99_at_256": spread(series(label, "streams_256", "added_ttft_ms", "p99")),
            }
            for label in ("gateway", "vllm_router")
        },
        "rss_mib_after": rss,
        "rounds": rounds,
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    with signals_stop():  # SIGTERM stops the children too
        sys.exit(main())
