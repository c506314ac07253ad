#!/usr/bin/env python3
"""Tell when a pinned Kubernetes version leaves EKS standard support.

Reads every `kubernetes_version` pinned under terraform/ (variable defaults, module arguments such as
the environments' call of modules/platform, and committed tfvars)
and terraform/eks-support-calendar.csv. Exits 1 when a pinned version is not in the calendar or
when today is later than its end of standard support minus the margin: upgrade before the cluster
is billed for extended support (6x the control-plane price) or, with upgrade_policy STANDARD,
auto-upgraded by AWS.

Usage: terraform/scripts/eks_support.py [--margin-days 60] [--today YYYY-MM-DD]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import re
import sys
from pathlib import Path

TF_DIR = Path(__file__).resolve().parents[1]
CALENDAR = TF_DIR / "eks-support-calendar.csv"
# `variable "kubernetes_version" { ... default = "1.35"`, or `kubernetes_version = "1.35"` as a module
# argument (envs/*/main.tf) or in tfvars.
_DEFAULT = re.compile(r'variable "kubernetes_version" \{[^}]*?default\s*=\s*"([0-9.]+)"', re.S)
_TFVARS = re.compile(r'^\s*kubernetes_version\s*=\s*"([0-9.]+)"', re.M)


def calendar(path: Path = CALENDAR) -> dict[str, dt.date]:
    rows = csv.DictReader(line for line in path.read_text().splitlines() if not line.startswith("#"))
    return {r["version"]: dt.date.fromisoformat(r["end_of_standard_support"]) for r in rows}


def pinned(tf_dir: Path = TF_DIR) -> dict[str, str]:
    """Pinned version by file (relative to terraform/)."""
    found: dict[str, str] = {}
    for path in sorted(tf_dir.rglob("*")):
        if ".terraform" in path.parts or not path.is_file():
            continue
        pattern = _DEFAULT if path.name == "variables.tf" else _TFVARS if path.suffix in (".tf", ".tfvars") else None
        if pattern and (match := pattern.search(path.read_text())):
            found[str(path.relative_to(tf_dir))] = match[1]
    return found


def problems(today: dt.date, margin_days: int) -> tuple[list[str], list[str]]:
    """(report lines, problems)."""
    ends = calendar()
    report, bad = [], []
    for where, version in pinned().items():
        end = ends.get(version)
        if end is None:
            bad.append(f"{where}: Kubernetes {version} is not in {CALENDAR.name}: add its EKS dates (with the source)")
            continue
        left = (end - today).days
        report.append(f"{where}: Kubernetes {version}, standard support until {end} ({left} days left)")
        if left < margin_days:
            bad.append(
                f"{where}: Kubernetes {version} leaves EKS standard support on {end} ({left} days); "
                f"upgrade (margin {margin_days} days)"
            )
    return report, bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--margin-days", type=int, default=60)
    parser.add_argument("--today", type=dt.date.fromisoformat, default=dt.datetime.now(dt.UTC).date())
    args = parser.parse_args()
    report, bad = problems(args.today, args.margin_days)
    print("\n".join(report))
    if not report and not bad:
        bad.append("no kubernetes_version pinned under terraform/")
    for line in bad:
        print(f"ERROR {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
