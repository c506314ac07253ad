"""``inferstack keys create --tenant NAME ...``: make a key, print it once with its key-file entry.

Only the entry (with the key's SHA-256) goes into the key file or Secret; the key itself is shown
here and nowhere else. ``inferstack keys hash`` reads a key on stdin and prints its SHA-256 (for
``INFERSTACK_ADMIN_KEY``).
"""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from .keys import KeyEntry, entry_yaml, generate_key, hash_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="inferstack keys", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="generate a key and print it with its key-file entry")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="", help="a note for people (never a metric label)")
    create.add_argument("--models", default="*", help="comma-separated models, or * (default)")
    create.add_argument("--rpm", type=int)
    create.add_argument("--tpm", type=int)
    create.add_argument("--max-concurrency", type=int)
    create.add_argument("--monthly-budget-usd", type=float)
    create.add_argument(
        "--routing-override",
        action="store_true",
        help="the key may choose a scheduling profile per request where the gateway refuses it to others",
    )
    sub.add_parser("hash", help="print the SHA-256 of a key read from stdin")
    args = parser.parse_args(argv)

    if args.command == "hash":
        key = sys.stdin.readline().strip()
        if not key:
            parser.error("no key on stdin")
        print(hash_key(key))
        return 0

    key = generate_key()
    models = "*" if args.models.strip() == "*" else frozenset(m.strip() for m in args.models.split(",") if m.strip())
    try:
        entry = KeyEntry(
            key_sha256=hash_key(key),
            tenant=args.tenant,
            name=args.name,
            models=models,
            rpm=args.rpm,
            tpm=args.tpm,
            max_concurrency=args.max_concurrency,
            monthly_budget_usd=args.monthly_budget_usd,
            routing_override=args.routing_override,
        )
    except ValidationError as exc:
        fields = ", ".join(sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]}))
        print(f"inferstack keys: invalid {fields}", file=sys.stderr)
        return 2
    print(f"API key (shown once; store it now): {key}")
    print("\nAdd this entry under 'keys:' in the key file:\n")
    print(entry_yaml(entry), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
