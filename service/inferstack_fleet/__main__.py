"""`python -m inferstack_fleet generate [--check]`: validate fleet/ and write k8s/fleet/generated.

Exit status 1 with one line per problem when the catalog cannot be deployed, or (with --check)
when the generated files are not what the catalog generates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import checks
from .catalog import CatalogError, load
from .generate import files, nodepool_families, render_base, stale, write

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inferstack_fleet", description=__doc__)
    parser.add_argument("command", choices=["generate", "validate"])
    parser.add_argument("--catalog", type=Path, default=REPO / "fleet", help="the folder with models/ and adapters/")
    parser.add_argument("--out", type=Path, default=REPO / "k8s" / "fleet" / "generated")
    parser.add_argument("--check", action="store_true", help="fail if the generated files are out of date")
    args = parser.parse_args(argv)
    try:
        catalog = load(args.catalog)
        checks.check(catalog)
        allowed = nodepool_families(REPO)
        problems = [p for m in catalog.models for p in checks.node_families(m, allowed)]
        if problems:
            raise CatalogError(problems)
    except CatalogError as exc:
        print(f"{args.catalog}: {len(exc.problems)} problem(s), nothing generated:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    if args.command == "validate":
        print(f"{len(catalog.models)} models, {len(catalog.adapters)} adapters: valid")
        return 0
    content = files(catalog, render_base(REPO))
    if args.check:
        differ = stale(args.out, content)
        if differ:
            print(f"{args.out} is out of date ({', '.join(differ)}): run `make fleet`", file=sys.stderr)
            return 1
        return 0
    write(args.out, content)
    print(f"wrote {len(content)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
