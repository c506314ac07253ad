"""Scorer ``load``: 1 for the least loaded candidate, 0 for the most (min-max normalised load).

Load is in-flight plus ``waiting_weight`` x the engine's waiting queue (``CycleState.loads``). When
every candidate carries the same load, all score 1: load then decides nothing.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from ..types import CycleState, EndpointLoad


class Load:
    name: ClassVar[str] = "load"
    kind: ClassVar[Literal["scorer"]] = "scorer"

    def score(self, state: CycleState, candidates: list[EndpointLoad]) -> dict[str, float]:
        loads = {c.url: state.loads[c.url] for c in candidates}
        lo, hi = min(loads.values()), max(loads.values())
        if hi == lo:
            return dict.fromkeys(loads, 1.0)
        return {url: 1.0 - (load - lo) / (hi - lo) for url, load in loads.items()}


PLUGIN = Load
