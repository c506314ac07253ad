"""The suite's explanation of a failed ``==`` between large values (``inferstack_devstack.assertdiff``,
hooked in by the root ``conftest.py``), and that pytest run as CI runs it explains one at once."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from inferstack_devstack import assertdiff

REPO = Path(__file__).resolve().parents[3]


def test_small_values_are_left_to_pytest() -> None:
    assert assertdiff.explain({"a": b"x" * 100}, {"a": b"y" * 100}) is None
    assert assertdiff.explain("x" * assertdiff.LIMIT, "y" * assertdiff.LIMIT) is None


def test_large_dicts_are_explained_by_the_keys_that_differ() -> None:
    big = {f"k{i}": bytes([i]) * 10_000 for i in range(10)}
    other = {k: v for k, v in big.items() if k != "k0"} | {"k5": b"\x00" * 10_000, "new": b""}
    lines = assertdiff.explain(big, other)
    assert lines is not None
    assert lines[0] == "<dict of 10 items> == <dict of 10 items>"
    assert "1 keys only on the left: 'k0'" in lines
    assert "1 keys only on the right: 'new'" in lines
    assert "1 keys with different values:" in lines
    (k5,) = [line for line in lines if line.startswith("  'k5': ")]
    assert k5.startswith("  'k5': <bytes of 10000, sha256 ") and " != <bytes of 10000, sha256 " in k5
    assert sum(map(len, lines)) < 1000


def test_large_sequences_are_explained_by_the_first_index_that_differs() -> None:
    text = "ab" * 40_000
    lines = assertdiff.explain(text, text[:1234] + "X" + text[1235:])
    assert lines is not None and "lengths 80000 and 80000" in lines
    assert "first difference at index 1234: 'a' != 'X'" in lines
    items = [bytes([i]) * 20_000 for i in range(5)]
    lines = assertdiff.explain(items, [*items[:3], b"", items[4]])
    assert lines is not None and "lengths 5 and 5" in lines
    assert any(line.startswith("first difference at index 3: <bytes of 20000, sha256 ") for line in lines)


def test_size_stops_counting_at_its_budget() -> None:
    huge = [b"x" * 1000] * 1_000_000  # a gigabyte, by reference: counting all of it would take seconds
    assert assertdiff.LIMIT < assertdiff.size(huge) < assertdiff.LIMIT + 2000


def test_pytest_as_ci_runs_it_explains_a_large_comparison_at_once() -> None:
    """With ``CI`` set pytest neither truncates nor skips its diff (``difflib``, quadratic): a failed
    comparison of two dicts of 200 KB values took longer than the 10-minute test timeout. The root
    conftest makes pytest truncate; here a test like that fails within a minute, explained."""
    test = """
import hashlib
def test_large():
    left = {f"k{i}": hashlib.sha256(bytes([i])).digest() * 6_000 for i in range(20)}
    right = dict(left, k3=b"x" * 192_000)
    assert left == right
"""
    (REPO / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=REPO / ".cache") as directory:  # below the root conftest
        path = Path(directory) / "test_large.py"
        path.write_text(test)
        env = {**os.environ, "CI": "true"}
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(REPO), str(path)]
        run = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert "1 keys with different values:" in run.stdout, run.stdout[-3000:]
    assert "'k3': <bytes of 192000, sha256 " in run.stdout
