"""Filter ``adapter_bound``: the per-replica cap of the ``adapter_affinity`` profile, on two loads.

1. In flight, as ``bounded_load`` but with its own factor, ``adapter_load_factor`` (2.0): no replica
   above c x the mean of in-flight plus weighted waiting requests.
2. Recent traffic, ``adapter_traffic_factor`` (1.2): no replica whose share of the last decisions
   (a count decayed by half every ``TRAFFIC_HALF_LIFE`` decisions) would exceed c x the mean share
   (plus ``TRAFFIC_SLACK`` decisions).
   In-flight counts cannot balance a light load (at one request at a time every replica is at 0),
   where two hot adapters placed on one replica would otherwise keep it busier than the rest.

A request that the cap moves off the replicas holding its adapter costs a load (and an eviction)
elsewhere, so the in-flight bound is looser than ``bounded_load``'s. A filter keeps what it would
drop when nothing else is left (the traffic bound then keeps the in-flight bound's choice).
Figures: bench/adapters_fake.py, docs/adapters.md.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from ..types import CycleState, EndpointLoad
from .bounded_load import BoundedLoad

TRAFFIC_HALF_LIFE = 200
TRAFFIC_SLACK = 5.0
"""Decisions a replica may run ahead of the traffic bound: no spill on the first few requests."""
_DECAY = 0.5 ** (1 / TRAFFIC_HALF_LIFE)


class AdapterBound(BoundedLoad):
    name: ClassVar[str] = "adapter_bound"
    kind: ClassVar[Literal["filter"]] = "filter"

    def __init__(self, adapter_load_factor: float = 2.0, adapter_traffic_factor: float = 1.2) -> None:
        # No slack over c x mean: the factor is already loose, and the adapter benches were measured so.
        super().__init__(adapter_load_factor, load_slack=0.0)
        if adapter_traffic_factor < 1:
            raise ValueError("adapter_traffic_factor must be >= 1")
        self.traffic_factor = adapter_traffic_factor
        self.traffic: dict[str, float] = {}
        """Replica URL -> decisions that chose it, decayed (bounded: pruned to the current replicas)."""

    def filter(self, state: CycleState, candidates: list[EndpointLoad]) -> list[EndpointLoad]:
        kept = super().filter(state, candidates)
        if len(kept) < 2:
            return kept
        traffic = self.traffic
        total = sum(traffic.get(c.url, 0.0) for c in state.candidates)
        cap = self.traffic_factor * (total + 1) / len(state.candidates) + TRAFFIC_SLACK
        within = [c for c in kept if traffic.get(c.url, 0.0) + 1 <= cap]
        return within or kept

    def picked(self, state: CycleState, url: str) -> None:
        traffic = self.traffic
        for known in traffic:
            traffic[known] *= _DECAY
        traffic[url] = traffic.get(url, 0.0) + 1.0
        if len(traffic) > 2 * len(state.candidates) + 8:  # replicas come and go: forget the gone
            current = {c.url for c in state.candidates}
            for gone in [u for u in traffic if u not in current]:
                del traffic[gone]


PLUGIN = AdapterBound
