"""Picker ``round_robin``: each candidate in turn, whatever the scores. The baseline."""

from __future__ import annotations

from typing import ClassVar, Literal

from ..types import CycleState, EndpointLoad, Reason


class RoundRobin:
    name: ClassVar[str] = "round_robin"
    kind: ClassVar[Literal["picker"]] = "picker"

    def __init__(self) -> None:
        self._turn = 0

    def pick(
        self, state: CycleState, candidates: list[EndpointLoad], scores: dict[str, float]
    ) -> tuple[EndpointLoad, Reason]:
        # Ordered by URL so the rotation does not depend on the order the caller lists replicas in.
        ordered = sorted(candidates, key=lambda e: e.url)
        chosen = ordered[self._turn % len(ordered)]
        self._turn += 1
        return chosen, "round_robin"


PLUGIN = RoundRobin
