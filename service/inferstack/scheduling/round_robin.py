"""``round_robin``: each replica in turn. The baseline; ignores load and prefixes."""

from __future__ import annotations

from collections.abc import Sequence

from .load import usable
from .types import Decision, EndpointLoad, RoutingRequest


class RoundRobin:
    name = "round_robin"

    def __init__(self) -> None:
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
        # Order by URL so the rotation does not depend on the order the caller lists replicas in.
        ordered = sorted(cands, key=lambda e: e.url)
        chosen = ordered[self._turn % len(ordered)]
        self._turn += 1
        return Decision(chosen.url, "round_robin")

    def on_finished(self, req: RoutingRequest, url: str) -> None:
        pass
