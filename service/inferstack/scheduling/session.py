"""``session``: requests with the same session key go to the same replica, while it is not overloaded.

Stateless: the replica is the key's rendezvous-hash favourite among the candidates, so memory is
constant however many sessions there are, every gateway replica agrees, and a replica joining or
leaving moves only its own share of sessions. With bounded loads a hot session spills to its
second choice (reason ``load_bound``). Requests without a key go to the least loaded replica.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b

from .hashing import rendezvous_order
from .load import least_loaded, load_cap, load_of, usable
from .types import Decision, EndpointLoad, RoutingRequest


class Session:
    name = "session"

    def __init__(self, load_factor: float = 1.5, waiting_weight: float = 1.0) -> None:
        if load_factor < 1:
            raise ValueError("load_factor must be >= 1")
        self.load_factor = load_factor
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
        if req.session_key is None:
            self._turn += 1
            return Decision(least_loaded(cands, self.waiting_weight, self._turn).url, "least_load")
        key = blake2b(f"{req.model}\x1f{req.session_key}".encode(), digest_size=16).digest()
        by_url = {c.url: c for c in cands}
        loads = {c.url: load_of(c, self.waiting_weight) for c in cands}
        cap = load_cap(list(loads.values()), self.load_factor)
        order = rendezvous_order(key, by_url)
        for rank, url in enumerate(order):
            if loads[url] + 1 <= cap:
                return Decision(url, "session" if rank == 0 else "load_bound")
        return Decision(min(order, key=loads.__getitem__), "load_bound")

    def on_finished(self, req: RoutingRequest, url: str) -> None:
        pass
