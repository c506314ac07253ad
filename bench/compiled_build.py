r"""This tree's gateway with some of its modules compiled to C by mypyc, for bench/ab_bench.py.

    .venv/bin/python bench/compiled_build.py --out .cache/compiled/B \
        relay/relay relay/sse upstream/client metrics/gateway
    .venv/bin/python bench/ab_bench.py --side source=. --side B=.cache/compiled/B/service

Copies ``service/inferstack`` under ``--out``, compiles the named modules (paths under
``service/inferstack``, no ``.py``) in place with pyproject.toml's mypy settings, and prints the
``service/`` directory a side puts first on its ``PYTHONPATH``. The gateway does not ship compiled:
docs/performance.md has the measurement (compiled, the per-token modules made a stream a few per
cent cheaper at most, not resolved, and a non-stream call up to 10 % dearer) and what else stood
against it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("modules", nargs="+", help="e.g. relay/relay (under service/inferstack)")
    args = parser.parse_args()
    service = args.out.resolve() / "service"
    shutil.rmtree(args.out, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "service" / "inferstack", service / "inferstack", ignore=ignore)
    files = [f"inferstack/{m}.py" for m in args.modules]
    mypyc = Path(sys.executable).with_name("mypyc")
    built = subprocess.run(
        [str(mypyc), "--config-file", str(REPO / "pyproject.toml"), *files],
        cwd=service,
        capture_output=True,
        text=True,
        timeout=900,  # mypy and gcc over a few modules: under a minute here
    )
    if built.returncode != 0:
        print(built.stdout[-4000:], built.stderr[-4000:], sep="\n", file=sys.stderr)
        return 1
    shutil.rmtree(service / "build", ignore_errors=True)
    print(service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
