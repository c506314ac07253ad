"""Filter ``bounded_load``: drop replicas that would exceed ``load_factor`` x the mean load.

Consistent hashing with bounded loads (``scheduling.load``): preference scorers keep their favourite
until it would be overloaded, then the next one takes the request. When every replica is over the cap
(only possible with fractional, waiting-weighted loads) the least loaded stay, marked as a fallback.

The cap is never below the mean plus ``load_slack`` requests: ``max(ceil(c x mean), ceil(mean + slack))``.
A gateway pod counts only its own requests, one or two per replica; at those counts ``ceil(1.5 x mean)``
is 1 on 3 replicas, so a pod with one request in flight sent its next turn away from the replica
holding its prefix although that replica was idle for everyone else (docs/routing.md). A larger
factor fixes that but stops binding on 2 replicas (``ceil(2 x mean)`` lets one take everything);
the slack loosens only small counts and changes nothing on 2 replicas at the default factor.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from ..load import load_cap
from ..types import CycleState, EndpointLoad


class BoundedLoad:
    name: ClassVar[str] = "bounded_load"
    kind: ClassVar[Literal["filter"]] = "filter"

    def __init__(self, load_factor: float = 1.5, load_slack: float = 1.0) -> None:
        if load_factor < 1:
            raise ValueError("load_factor must be >= 1")
        if load_slack < 0:
            raise ValueError("load_slack must be >= 0")
        self.load_factor, self.load_slack = load_factor, load_slack

    def filter(self, state: CycleState, candidates: list[EndpointLoad]) -> list[EndpointLoad]:
        loads = state.loads
        values = list(loads.values())
        cap = max(load_cap(values, self.load_factor), math.ceil((sum(values) + 1) / len(values) + self.load_slack))
        kept = [c for c in candidates if loads[c.url] + 1 <= cap]
        if kept:
            return kept
        state.fallback = True
        least = min(loads[c.url] for c in candidates)
        return [c for c in candidates if loads[c.url] == least]


PLUGIN = BoundedLoad
