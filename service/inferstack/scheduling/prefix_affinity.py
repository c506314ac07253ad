"""``prefix_affinity`` (the default): send a prompt where its prefix is probably already cached.

1. Hash the prompt's leading character blocks into a chain (``hashing.prefix_chain``).
2. Ask the ``PrefixIndex`` how many leading blocks each candidate is believed to hold.
3. Rank candidates by that match, longest first; among equal matches (and when nothing matches) by
   the rendezvous-hash order of the prompt's first few blocks, so a new prefix has one stable home
   that every gateway replica agrees on.
4. Take the first candidate under the bounded-load cap (``c`` x mean load, new request counted).
5. Record the chain for the chosen replica: the next request with this prefix will match it.

Reasons: ``prefix_hit`` (the chosen replica has the longest match), ``load_bound`` (a replica with a
longer match was at the cap), ``prefix_miss`` (no replica matched: the prefix's home, or the next
one under the cap), ``only_candidate``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .hashing import prefix_chain, rendezvous_order
from .index import PrefixIndex
from .load import least_loaded, load_cap, load_of, usable
from .types import Decision, EndpointLoad, Reason, RoutingRequest


class PrefixAffinity:
    name = "prefix_affinity"

    def __init__(
        self,
        load_factor: float = 1.5,
        waiting_weight: float = 1.0,
        block_chars: int = 256,
        max_blocks: int = 128,
        home_blocks: int = 4,
        index_capacity: int = 65536,
    ) -> None:
        if load_factor < 1:
            raise ValueError("load_factor must be >= 1")
        if block_chars < 1 or max_blocks < 1 or home_blocks < 1:
            raise ValueError("block_chars, max_blocks and home_blocks must be >= 1")
        self.load_factor = load_factor
        self.waiting_weight = waiting_weight
        self.block_chars = block_chars
        self.max_blocks = max_blocks
        self.home_blocks = home_blocks
        self.index = PrefixIndex(index_capacity)
        self._turn = 0

    def pick(
        self,
        req: RoutingRequest,
        candidates: Sequence[EndpointLoad],
        exclude: frozenset[str] = frozenset(),
    ) -> Decision:
        cands = usable(candidates, exclude)
        chain = prefix_chain(req.model, req.prompt, self.block_chars, self.max_blocks)
        if len(cands) == 1:
            return self._chosen(chain, cands[0].url, "only_candidate", 0)
        loads = {c.url: load_of(c, self.waiting_weight) for c in cands}
        cap = load_cap(list(loads.values()), self.load_factor)
        if not chain:  # shorter than one block: nothing to be affine to
            self._turn += 1
            url = least_loaded(cands, self.waiting_weight, self._turn).url
            return Decision(url, "least_load" if loads[url] + 1 <= cap else "load_bound")
        matched = self.index.match(chain, loads)
        best = max(matched.values())
        home = chain[min(len(chain), self.home_blocks) - 1]
        order = rendezvous_order(home, loads)
        order.sort(key=matched.__getitem__, reverse=True)  # stable: ties keep the rendezvous order
        for url in order:
            if loads[url] + 1 <= cap:
                reason: Reason = "prefix_miss"
                if best > 0:
                    reason = "prefix_hit" if matched[url] == best else "load_bound"
                return self._chosen(chain, url, reason, matched[url])
        url = min(order, key=loads.__getitem__)  # only reachable with fractional (waiting) loads
        return self._chosen(chain, url, "load_bound", matched[url])

    def _chosen(self, chain: list[bytes], url: str, reason: Reason, blocks: int) -> Decision:
        self.index.record(chain, url)
        return Decision(url, reason, blocks)

    def on_finished(self, req: RoutingRequest, url: str) -> None:
        pass
