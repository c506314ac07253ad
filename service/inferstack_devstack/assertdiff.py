"""A short account of a failed ``==`` between large values, for the suite's ``conftest.py``.

pytest explains a failed ``==`` with ``difflib.ndiff`` over the two values pretty-printed, which is
quadratic in their lines, and it does not truncate on CI (``CI`` set), so the whole diff is computed:
two dicts of adapter weights as bytes kept CI busy past the test's 10-minute timeout, which then
hid the failure it was explaining. Above ``LIMIT`` characters this says where the values differ
instead: keys only on one side, keys whose values differ, or the first index that differs, each
value by type, size and digest.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping, Sequence

LIMIT = 50_000
"""Characters of content (strings and bytes, summed over containers) above which pytest's diff is skipped."""
SHOWN = 10
"""Keys or items listed per kind of difference."""


def size(value: object, budget: int = LIMIT + 1) -> int:
    """About how many characters ``value`` holds, counted up to ``budget`` (the walk stops there)."""
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, Mapping):
        items: Iterable[object] = itertools.chain.from_iterable(value.items())
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        return len(repr(value)) if budget > 0 else 0
    total = 2
    for item in items:
        total += size(item, budget - total) + 2
        if total >= budget:
            break
    return total


def brief(value: object) -> str:
    """A value in a few dozen characters: short ones as they are, long ones by type, size and digest."""
    text = repr(value)
    if len(text) <= 80:
        return text
    if isinstance(value, str | bytes | bytearray):
        data = value.encode() if isinstance(value, str) else bytes(value)
        return f"<{type(value).__name__} of {len(value)}, sha256 {hashlib.sha256(data).hexdigest()[:12]}>"
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return f"<{type(value).__name__} of {len(value)} items>"
    return text[:77] + "..."


def explain(left: object, right: object) -> list[str] | None:
    """Lines for pytest's ``pytest_assertrepr_compare`` when ``left == right`` failed on large values;
    None for small ones (pytest's own diff then)."""
    left_size, right_size = size(left), size(right)
    if max(left_size, right_size) <= LIMIT:
        return None
    lines = [
        f"{brief(left)} == {brief(right)}",
        f"(over {LIMIT:,} characters: pytest's diff skipped; where the values differ)",
    ]
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        only_left = [k for k in left if k not in right]
        only_right = [k for k in right if k not in left]
        differ = [k for k in left if k in right and left[k] != right[k]]
        for label, keys in (("only on the left", only_left), ("only on the right", only_right)):
            if keys:
                lines.append(f"{len(keys)} keys {label}: " + ", ".join(brief(k) for k in keys[:SHOWN]))
        if differ:
            lines.append(f"{len(differ)} keys with different values:")
            lines += [f"  {brief(k)}: {brief(left[k])} != {brief(right[k])}" for k in differ[:SHOWN]]
    elif isinstance(left, Sequence) and isinstance(right, Sequence):
        lines.append(f"lengths {len(left)} and {len(right)}")
        first = next((i for i, (a, b) in enumerate(zip(left, right, strict=False)) if a != b), None)
        if first is not None:
            lines.append(f"first difference at index {first}: {brief(left[first])} != {brief(right[first])}")
    return lines
