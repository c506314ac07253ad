"""The ``inferstack`` command: ``serve`` runs the gateway; other subcommands are small tools."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the gateway (configured by INFERSTACK_* environment variables)")
    sub.add_parser("keys", help="create API keys and key-file entries (inferstack keys --help)", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "keys":
        from .filters.keys_cli import main as keys_main

        return keys_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "serve":
        from .config import Settings

        try:
            settings = Settings()
        except ValidationError as exc:
            print(f"inferstack: invalid configuration:\n{_describe(exc)}", file=sys.stderr)
            return 2
        from .server import serve

        serve(settings)
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        name = "INFERSTACK_" + "__".join(str(p) for p in error["loc"]).upper() if error["loc"] else "settings"
        lines.append(f"  {name}: {error['msg']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
