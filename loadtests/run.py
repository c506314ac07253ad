"""``make loadtest``: run a profile headless against a host, write the report, exit with the verdict.

    python loadtests/run.py                                   # smoke profile against make up's gateway
    python loadtests/run.py --host https://llm.example.com --profile release
    HOST=... PROFILE=... python loadtests/run.py               # the same, as make passes them
    python loadtests/run.py --profile chat --users 64 --duration 10m -- --processes 4
    python loadtests/run.py --report-only loadtests/reports/20260101T120000Z-smoke

Everything after ``--`` goes to locust unchanged. Exit code: 0 every SLO held, 3 an SLO broke,
anything else: the run itself failed (2: bad profile or SLO file; locust's own codes otherwise).
The API key comes from the environment, ``INFERSTACK_API_KEY`` (comma-separated for several, one per
user in turn), so it never appears in the process list; against ``make up``'s gateway its dev key is
used. The report goes to ``--report-dir``, or ``$REPORT_DIR``, or loadtests/reports/<time>-<profile>.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from llmload import slo  # noqa: E402
from llmload.profile import load_profile  # noqa: E402
from llmload.report import build  # noqa: E402
from llmload.shapes import parse_seconds  # noqa: E402

DEFAULT_HOST = "http://127.0.0.1:8080"  # make up's gateway
DEV_KEY_FILE = HERE.parent / ".cache" / "devstack" / "dev-key.txt"  # written by make up when auth is on
EXIT_BAD_CONFIG = 2
KEY_ENV = "INFERSTACK_API_KEY"  # the one name for the load test's key (comma-separated for several)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    split = argv.index("--") if "--" in argv else len(argv)
    ours, theirs = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("HOST") or DEFAULT_HOST)
    parser.add_argument("--profile", default=os.environ.get("PROFILE") or "smoke", help="name in profiles/ or a path")
    parser.add_argument("--slo", default=os.environ.get("SLO") or "", help="thresholds file (default: the profile's)")
    parser.add_argument("--shape", default=None, help="override the profile's shape: steady, step, spike, soak")
    parser.add_argument("--users", type=int, default=None, help="override the shape's (peak) users")
    parser.add_argument("--duration", default=None, help="override the shape's duration: 90, 10m, 2h")
    parser.add_argument(
        "--report-dir",
        default=os.environ.get("REPORT_DIR") or "",
        help="default: $REPORT_DIR, else loadtests/reports/<time>-<profile>",
    )
    parser.add_argument("--report-only", metavar="DIR", help="rebuild the HTML report of a finished run")
    return parser.parse_args(ours), theirs


def main(argv: list[str]) -> int:
    args, locust_args = parse_args(argv)
    if args.report_only:
        print(f"report: {build(Path(args.report_only))}")
        return 0
    try:
        duration = parse_seconds(args.duration, "--duration") if args.duration else None
        profile = load_profile(args.profile, users=args.users, duration=duration, shape=args.shape)
        slo_path = Path(args.slo) if args.slo else profile.slo
        slo.load_thresholds(slo_path)
    except (OSError, ValueError) as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report_dir = Path(args.report_dir) if args.report_dir else HERE / "reports" / f"{stamp}-{profile.name}"
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "run.json").write_text(
        json.dumps(
            {
                "host": args.host,
                "profile": profile.name,
                "slo": str(slo_path),
                "started": stamp,
                "shape": f"{profile.shape.name}, peak {profile.shape.peak_users} users, {profile.shape.duration:.0f} s",
            },
            indent=2,
        )
    )
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(HERE / "locustfile.py"),
        "--headless",
        "--host",
        args.host.rstrip("/"),
        "--load-profile",
        str(args.profile),
        "--slo",
        str(slo_path),
        "--report-dir",
        str(report_dir),
        "--csv",
        str(report_dir / "locust"),
        "--csv-full-history",
        "--html",
        str(report_dir / "locust.html"),
        *(["--shape", args.shape] if args.shape else []),
        *(["--shape-users", str(args.users)] if args.users else []),
        *(["--shape-duration", args.duration] if args.duration else []),
        *locust_args,
    ]
    code = subprocess.call(command, env=_env(args.host))
    if any(report_dir.glob("requests-*.csv")):
        print(f"report: {build(report_dir)}")
    return code


def _env(host: str) -> dict[str, str]:
    env = dict(os.environ)
    if host.rstrip("/") == DEFAULT_HOST and not env.get(KEY_ENV) and DEV_KEY_FILE.exists():
        env[KEY_ENV] = DEV_KEY_FILE.read_text().strip()
    return env


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
