"""Scorer ``adapter``: send a LoRA adapter's requests where the adapter already is.

For a request naming an adapter (a catalogued adapter version, or an adapter an engine lists with
a ``parent``), each replica of its base model scores by what a request there would cost:

    1.0  loaded        the adapter is resident in the replica's slots (no load at all)
    0.5  free_slot     it is not, but a slot is empty (a load, nothing evicted)
    0.4  unknown_state the replica's slot count is unknown (no catalog ``max_loras``, no engine metric)
    0.2  (evict)       every slot is taken, one by an idle adapter: a load that evicts it
    0.0  (busy)        every slot holds an adapter with requests in flight: vLLM batches at most
                       ``max_loras`` adapters, so the request would also wait

Within the free-slot and evict tiers a little (< 0.1) is added where the loss is smallest: a free
slot on the replica whose resident adapters see the least demand lately (so hot adapters end up on
different replicas), an eviction where the adapter to go (the least recently used idle one, as
vLLM evicts) sees the least demand (so a rarely used adapter rotates through one slot instead of
pushing out a busy one). Demand is the placement's decayed request count per adapter. Equal scores
go to the least loaded (the ``max_score`` picker). Put the ``adapter_bound`` filter in front (the
``adapter_affinity`` profile does): a hot adapter stays on the replicas holding it until one would
exceed its cap, then spills to the next, which loads it too, so the adapter follows its load
instead of piling onto one replica. Requests for a base model score
0.5 everywhere: load decides.

The placement (``upstream.adapters.AdapterPlacement``: what the engines tell and what the gateway
sent where) is the lifespan's; the scheduler hands it over with ``attach``. Reasons, in
``inferstack_adapter_routing_decisions_total`` and ``inferstack_routing_decisions_total``:
``loaded``, ``free_slot``, ``least_loaded``, ``unknown_state``, and ``capped`` when a replica
holding the adapter was left out by the load cap.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from ...upstream.adapters import AdapterPlacement
from ..types import CycleState, EndpointLoad, Reason

LOADED, FREE_SLOT, UNKNOWN, EVICT_IDLE, BUSY = 1.0, 0.5, 0.4, 0.2, 0.0
NUDGE = 0.09
"""Most a tier's score moves by demand: less than the gap between tiers."""
_NOTE = "adapter"


class Adapter:
    name: ClassVar[str] = "adapter"
    kind: ClassVar[Literal["scorer"]] = "scorer"

    def __init__(self) -> None:
        self.placement = AdapterPlacement()

    def attach(self, placement: AdapterPlacement) -> None:
        """Read ``placement`` (the lifespan's record of where adapters are) from now on."""
        self.placement = placement

    def tier(self, url: str, adapter: str, base: str) -> tuple[float, float]:
        """The replica's tier for ``adapter``, and the nudge within the tier (0..NUDGE, higher is better)."""
        placement = self.placement
        replica = placement.replica(url)
        if replica is not None and adapter in replica.resident:
            return LOADED, 0.0
        slots = placement.slots(url, base)
        if slots is None:
            return UNKNOWN, 0.0
        if replica is None:
            return FREE_SLOT, NUDGE
        if len(replica.resident) < slots:
            held = sum(placement.demand(a) for a in replica.resident)
            return FREE_SLOT, NUDGE / (1.0 + held)
        victim = next((a for a in replica.resident if replica.in_flight[a] <= 0), None)
        if victim is None or replica.busy() >= slots:
            return BUSY, 0.0
        return EVICT_IDLE, NUDGE / (1.0 + placement.demand(victim))

    def score(self, state: CycleState, candidates: list[EndpointLoad]) -> dict[str, float]:
        adapter = state.request.model
        base = self.placement.base_of(adapter)
        if base is None:
            return dict.fromkeys((c.url for c in candidates), FREE_SLOT)
        # Every candidate, so the reason can tell a holder left out by the load cap.
        tiers = {c.url: self.tier(c.url, adapter, base) for c in state.candidates}
        state.notes[_NOTE] = {url: tier for url, (tier, _) in tiers.items()}
        return {c.url: sum(tiers[c.url]) for c in candidates}

    def reason(self, state: CycleState, url: str) -> Reason | None:
        tiers = state.notes.get(_NOTE)
        if not isinstance(tiers, dict):
            return None
        tier = tiers[url]
        if tier == LOADED:
            return "loaded"
        if LOADED in tiers.values():
            return "capped"
        if tier == FREE_SLOT:
            return "free_slot"
        return "unknown_state" if tier == UNKNOWN else "least_loaded"

    def picked(self, state: CycleState, url: str) -> None:
        if _NOTE not in state.notes:  # the only candidate: nothing was scored
            self.score(state, list(state.candidates))
        state.adapter_reason = self.reason(state, url)


PLUGIN = Adapter
