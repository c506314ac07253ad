"""Scorer ``session``: requests with the same session key prefer the same replica.

Stateless: the favourite is the key's rendezvous-hash first choice among the candidates, so memory is
constant however many sessions there are, every gateway replica agrees, and a replica joining or
leaving moves only its own share of sessions. Behind ``bounded_load`` a hot session spills to its
next choice (reason ``load_bound``). Without a key every candidate scores 0: the picker decides.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import ClassVar, Literal

from ..hashing import rendezvous_order
from ..types import CycleState, EndpointLoad, Reason


class Session:
    name: ClassVar[str] = "session"
    kind: ClassVar[Literal["scorer"]] = "scorer"

    def score(self, state: CycleState, candidates: list[EndpointLoad]) -> dict[str, float]:
        req = state.request
        if req.session_key is None:
            return dict.fromkeys((c.url for c in candidates), 0.0)
        key = blake2b(f"{req.model}\x1f{req.session_key}".encode(), digest_size=16).digest()
        # Ranked over every candidate, so the reason can tell whether the favourite was filtered out.
        order = rendezvous_order(key, (c.url for c in state.candidates))
        state.notes["session.favourite"] = order[0]
        n = len(order)
        kept = {c.url for c in candidates}
        return {url: (n - rank) / n for rank, url in enumerate(order) if url in kept}

    def reason(self, state: CycleState, url: str) -> Reason | None:
        favourite = state.notes.get("session.favourite")
        if favourite is None:
            return None
        return "session" if url == favourite else "load_bound"


PLUGIN = Session
