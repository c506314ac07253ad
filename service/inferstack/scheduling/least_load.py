"""``least_load``: the replica with the lowest in-flight + weighted waiting count."""

from __future__ import annotations

from collections.abc import Sequence

from .load import least_loaded, usable
from .types import Decision, EndpointLoad, RoutingRequest


class LeastLoad:
    name = "least_load"

    def __init__(self, waiting_weight: float = 1.0) -> None:
        self.waiting_weight = waiting_weight
        self._turn = 0

    def pick(
        self,
        req: RoutingRequest,
        candidates: Sequence[EndpointLoad],
        exclude: frozenset[str] = frozenset(),
    ) -> Decision:
        cands = usable(candidates, exclude)
        if len(cands) == 1:
            return Decision(cands[0].url, "only_candidate")
        self._turn += 1
        return Decision(least_loaded(cands, self.waiting_weight, self._turn).url, "least_load")

    def on_finished(self, req: RoutingRequest, url: str) -> None:
        pass
