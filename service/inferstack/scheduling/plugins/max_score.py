"""Picker ``max_score``: the highest summed score; ties go to the least loaded.

Least loaded: lowest load (in-flight + weighted waiting), then lowest KV-cache usage (unknown counts as
half full, as in the ``kv_cache`` scorer: ``scheduling.load.kv_usage``); exact ties
rotate from one decision to the next so they do not pile on one replica. A profile without scorers
is thus "least load" (reason ``least_load``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from ..load import kv_usage
from ..types import CycleState, EndpointLoad, Reason


class MaxScore:
    name: ClassVar[str] = "max_score"
    kind: ClassVar[Literal["picker"]] = "picker"

    def __init__(self) -> None:
        self._turn = 0

    def pick(
        self, state: CycleState, candidates: list[EndpointLoad], scores: dict[str, float]
    ) -> tuple[EndpointLoad, Reason]:
        best = max(scores[c.url] for c in candidates)
        finalists = [c for c in candidates if scores[c.url] == best]
        if len(finalists) == 1:
            return finalists[0], "max_score"
        self._turn += 1
        everyone = state.candidates
        position = {c.url: i for i, c in enumerate(everyone)}
        n, turn, loads = len(everyone), self._turn, state.loads
        chosen = min(finalists, key=lambda e: (loads[e.url], kv_usage(e), (position[e.url] - turn) % n))
        return chosen, "least_load"


PLUGIN = MaxScore
