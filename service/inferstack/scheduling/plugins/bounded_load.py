"""Filter ``bounded_load``: drop replicas that would exceed ``load_factor`` x the mean load.

Consistent hashing with bounded loads (``scheduling.load``): preference scorers keep their favourite
until it would be overloaded, then the next one takes the request. When every replica is over the cap
(only possible with fractional, waiting-weighted loads) the least loaded stay, marked as a fallback.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from ..load import load_cap
from ..types import CycleState, EndpointLoad


class BoundedLoad:
    name: ClassVar[str] = "bounded_load"
    kind: ClassVar[Literal["filter"]] = "filter"

    def __init__(self, load_factor: float = 1.5) -> None:
        if load_factor < 1:
            raise ValueError("load_factor must be >= 1")
        self.load_factor = load_factor

    def filter(self, state: CycleState, candidates: list[EndpointLoad]) -> list[EndpointLoad]:
        loads = state.loads
        cap = load_cap(list(loads.values()), self.load_factor)
        kept = [c for c in candidates if loads[c.url] + 1 <= cap]
        if kept:
            return kept
        state.fallback = True
        least = min(loads[c.url] for c in candidates)
        return [c for c in candidates if loads[c.url] == least]


PLUGIN = BoundedLoad
