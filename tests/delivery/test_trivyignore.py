"""docker/trivyignore.yaml, the accepted findings of the images' CRITICAL gate: every entry carries
its reason, who accepted it and when, and an expiry that forces a review within six months; the
image workflow reads this file."""

from __future__ import annotations

import datetime as dt
import re

import yaml

from ._tools import DOCKER, WORKFLOWS

IGNORE = DOCKER / "trivyignore.yaml"
MAX_ACCEPTANCE = dt.timedelta(days=183)


def test_every_accepted_finding_has_a_reason_an_owner_and_an_expiry() -> None:
    entries = yaml.safe_load(IGNORE.read_text())["vulnerabilities"]
    assert entries, "an empty list needs no file"
    for entry in entries:
        assert re.fullmatch(r"CVE-\d{4}-\d{4,}|GHSA(-[23456789cfghjmpqrvwx]{4}){3}", entry["id"]), entry
        accepted = re.search(r"[Aa]ccepted by @\S+ on (\d{4}-\d{2}-\d{2})", entry.get("statement", ""))
        assert accepted, f"{entry['id']}: statement must say why and 'accepted by @who on YYYY-MM-DD'"
        expiry = entry.get("expired_at")
        assert isinstance(expiry, dt.date), f"{entry['id']}: expired_at (YYYY-MM-DD) is required"
        on = dt.date.fromisoformat(accepted.group(1))
        assert on < expiry <= on + MAX_ACCEPTANCE, f"{entry['id']}: expiry must be within 183 days of acceptance"
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids)), "duplicate entries"


def test_the_image_workflow_gates_on_it() -> None:
    text = (WORKFLOWS / "images.yml").read_text()
    # Trivy reads an ignore file as YAML only when its name ends in .yaml.
    assert re.search(r"^\s+trivyignores: docker/trivyignore\.yaml$", text, flags=re.M)
