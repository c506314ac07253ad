"""The install scripts name only files that exist (a missing requirements file fails only on a
machine where that step runs, so nothing else would notice)."""

from __future__ import annotations

import re

from ._tools import REPO

_NAMED = re.compile(r"(?<![\w$/])(requirements/[\w.-]+\.txt)")


def test_every_requirements_file_a_script_names_exists() -> None:
    named = {
        (script.name, path)
        for script in sorted((REPO / "scripts").rglob("*.sh"))
        for path in _NAMED.findall(script.read_text())
    }
    assert named, "the pattern found nothing: the test would pass vacuously"
    missing = sorted(f"{script}: {path}" for script, path in named if not (REPO / path).is_file())
    assert not missing, missing
