"""The README's "adding a model or an adapter" example is a valid fleet: its two files, added to
fleet/, validate and generate an engine for the model and a catalog entry for the adapter."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from inferstack_fleet import catalog as fleet_catalog
from inferstack_fleet.generate import files, render_base

REPO = Path(__file__).resolve().parents[2]


def test_the_readme_example_is_two_valid_files(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(REPO / "fleet", fleet, ignore=shutil.ignore_patterns("tests", "*.md"))
    blocks = re.findall(r"```yaml\n(# fleet/(\S+?): .*?\n)```", (REPO / "README.md").read_text(), re.S)
    assert [path.split("/")[0] for _, path in blocks] == ["models", "adapters"]
    for body, path in blocks:
        (fleet / path).parent.mkdir(parents=True, exist_ok=True)
        (fleet / path).write_text(body)
    catalog = fleet_catalog.load(fleet)
    generated = files(catalog, render_base(REPO))
    assert "mistral-small.yaml" in generated
    served = json.loads(generated["catalog.json"])
    assert served["adapters"]["legal-tone"]["base"] == "mistral-small"
