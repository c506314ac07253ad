"""Locust event hooks: our command-line options, the set-up from the profile, and the SLO verdict.

Registered when ``locustfile.py`` imports this module. The verdict is judged once every user has
stopped (``quitting``), written next to the samples, and printed after locust's own summary.
"""

from __future__ import annotations

import csv
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import RequestStats, StatsEntry

from . import slo
from .profile import LOADTESTS, load_profile
from .prompts import system_prompts
from .samples import SampleWriter
from .shapes import parse_seconds
from .users import USER_CLASSES, LLMUser, ProfileShape, RunContext

KEY_ENV = "INFERSTACK_API_KEY"  # the one name for the load test's key (comma-separated for several)


def _add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("llmload", "LLM load test options (loadtests/README.md)")
    group.add_argument(
        "--load-profile",
        default=os.environ.get("PROFILE", "smoke"),
        help="Profile name in loadtests/profiles/ or a YAML path (env PROFILE)",
    )
    group.add_argument("--slo", default=os.environ.get("SLO", ""), help="SLO thresholds file (default: the profile's)")
    group.add_argument("--report-dir", default="", help="Where samples and the verdict go (default: reports/<time>)")
    group.add_argument(
        "--api-key",
        action="append",
        default=[],
        help="API key, repeat for several (env INFERSTACK_API_KEY, comma-separated for several)",
    )
    group.add_argument("--shape", default=None, help="Override the profile's shape: steady, step, spike, soak")
    group.add_argument("--shape-users", type=int, default=None, help="Override the shape's users (peak)")
    group.add_argument("--shape-duration", default=None, help="Override the shape's duration (90, 10m, 2h)")


def _api_keys(options: Any) -> list[str]:
    if options.api_key:
        return list(options.api_key)
    # One name everywhere (make loadtest, the pipeline's gate, the smoke test): INFERSTACK_API_KEY.
    return [k.strip() for k in os.environ.get(KEY_ENV, "").split(",") if k.strip()]


def _on_init(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    assert options is not None

    duration = parse_seconds(options.shape_duration, "--shape-duration") if options.shape_duration else None
    profile = load_profile(options.load_profile, users=options.shape_users, duration=duration, shape=options.shape)
    report_dir = Path(options.report_dir or LOADTESTS / "reports" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    runner = environment.runner
    writer = None
    if not isinstance(runner, MasterRunner):
        tag = f"worker-{os.getpid()}" if isinstance(runner, WorkerRunner) else "local"
        writer = SampleWriter(report_dir, tag)
    conversation = profile.scenario("conversation")
    LLMUser.run_context = RunContext(
        profile=profile,
        api_keys=_api_keys(options),
        report_dir=report_dir,
        writer=writer,
        slo_path=Path(options.slo) if options.slo else profile.slo,
        models=dict(profile.models),
        prompts=system_prompts(conversation.system_prompts, conversation.system_prompt_words) if conversation else (),
    )
    # Only the profile's scenarios run, weighted as it says (weights are class attributes in locust).
    weights = {scenario.kind: scenario.weight for scenario in profile.scenarios}
    for kind, cls in USER_CLASSES.items():
        cls.weight = weights.get(kind, 0)
    environment.user_classes[:] = [cls for cls in environment.user_classes if cls.weight > 0]
    if isinstance(environment.shape_class, ProfileShape):
        environment.shape_class.shape = profile.shape
    if not environment.stop_timeout:
        # When the test ends (or a step ramps down), users finish the stream they are reading instead of
        # being killed mid-request: the last requests are measured, not silently dropped.
        environment.stop_timeout = min(profile.timeouts.total, 60.0)


def _on_quitting(environment: Environment, **_: Any) -> None:
    ctx = LLMUser.run_context
    if ctx is None:
        return
    if ctx.writer is not None:
        ctx.writer.close()
    if isinstance(environment.runner, WorkerRunner):
        return
    measured = measure(environment.stats)
    verdicts = slo.judge(slo.load_thresholds(ctx.slo_path), measured)
    ctx.report_dir.mkdir(parents=True, exist_ok=True)
    (ctx.report_dir / "verdict.json").write_text(slo.to_json(verdicts, measured))
    (ctx.report_dir / "verdict.txt").write_text(slo.table(verdicts) + "\n")
    write_final_stats(environment.stats, ctx.report_dir / "final_stats.csv")
    # Our verdict replaces locust's "any failure -> exit 1": the error-rate SLO judges failures.
    environment.process_exit_code = slo.exit_code(verdicts)


def _on_quit(exit_code: int, **_: Any) -> None:
    # After locust's own summary tables, so the verdict is the last thing on screen.
    ctx = LLMUser.run_context
    verdict = ctx.report_dir / "verdict.txt" if ctx else None
    if verdict is not None and verdict.exists():
        print(f"\nSLO thresholds: {ctx.slo_path if ctx else ''}\n{verdict.read_text()}", flush=True)


FINAL_COLUMNS = [
    "Type",
    "Name",
    "Request Count",
    "Failure Count",
    "Average Response Time",
    "50%",
    "95%",
    "99%",
    "Max Response Time",
    "Requests/s",
]


def write_final_stats(stats: RequestStats, path: Path) -> None:
    """Every entry once all users have stopped. Locust's own ``locust_stats.csv`` is a snapshot
    taken every second, so it can miss the requests that finished in the run's last second."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FINAL_COLUMNS)
        for entry in sorted(stats.entries.values(), key=lambda e: (e.method or "", e.name)):
            writer.writerow(
                [
                    entry.method,
                    entry.name,
                    entry.num_requests,
                    entry.num_failures,
                    entry.avg_response_time,
                    *(entry.get_response_time_percentile(q) for q in (0.5, 0.95, 0.99)),
                    entry.max_response_time,
                    entry.total_rps,
                ]
            )


def measure(stats: RequestStats) -> dict[str, float | None]:
    """The SLO metrics from locust's statistics (every scenario together)."""

    def merged(request_type: str) -> StatsEntry:
        entry = StatsEntry(stats, request_type, request_type)
        for (_, method), other in stats.entries.items():
            if method == request_type:
                entry.extend(other)
        return entry

    def percentile(entry: StatsEntry, q: float) -> float | None:
        return entry.get_response_time_percentile(q) / 1000 if entry.num_requests else None

    ttft, itl, e2e, tokens = merged("TTFT"), merged("ITL"), merged("E2E"), merged("TOKENS")
    elapsed = (stats.total.last_request_timestamp or time.time()) - stats.total.start_time
    return {
        "ttft_p50_s": percentile(ttft, 0.50),
        "ttft_p95_s": percentile(ttft, 0.95),
        "ttft_p99_s": percentile(ttft, 0.99),
        "itl_p50_s": percentile(itl, 0.50),
        "itl_p95_s": percentile(itl, 0.95),
        "itl_p99_s": percentile(itl, 0.99),
        "e2e_p95_s": percentile(e2e, 0.95),
        "error_rate": e2e.num_failures / e2e.num_requests if e2e.num_requests else None,
        "output_tokens_per_s": tokens.num_requests / elapsed if elapsed > 0 else None,
        "requests_per_s": e2e.num_requests / elapsed if elapsed > 0 else None,
    }


events.init_command_line_parser.add_listener(_add_arguments)  # type: ignore[no-untyped-call]
events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_on_quitting)  # type: ignore[no-untyped-call]
events.quit.add_listener(_on_quit)  # type: ignore[no-untyped-call]
