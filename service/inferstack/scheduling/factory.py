"""``make_policy(name, **settings)``: a policy by its configured name.

Every policy accepts the whole settings vocabulary and uses what applies to it, so one settings
object can build any policy (and all of them, for a per-request override). An unknown setting is an
error: a typo must not silently fall back to a default.
"""

from __future__ import annotations

from typing import Any

from .least_load import LeastLoad
from .prefix_affinity import PrefixAffinity
from .round_robin import RoundRobin
from .session import Session
from .types import Policy

POLICIES: tuple[str, ...] = ("prefix_affinity", "least_load", "session", "round_robin")
SETTINGS: dict[str, tuple[str, ...]] = {
    "round_robin": (),
    "least_load": ("waiting_weight",),
    "session": ("load_factor", "waiting_weight"),
    "prefix_affinity": ("load_factor", "waiting_weight", "block_chars", "max_blocks", "home_blocks", "index_capacity"),
}
_ALL_SETTINGS = frozenset(s for names in SETTINGS.values() for s in names)


def make_policy(name: str, **settings: Any) -> Policy:
    if name not in SETTINGS:
        raise ValueError(f"unknown routing policy {name!r}; choose one of {', '.join(POLICIES)}")
    unknown = set(settings) - _ALL_SETTINGS
    if unknown:
        raise ValueError(f"unknown routing settings: {', '.join(sorted(unknown))}")
    mine = {k: v for k, v in settings.items() if k in SETTINGS[name]}
    if name == "round_robin":
        return RoundRobin()
    if name == "least_load":
        return LeastLoad(**mine)
    if name == "session":
        return Session(**mine)
    return PrefixAffinity(**mine)
