"""Scorer ``prefix``: prefer the replica that probably holds the longest prefix of the prompt.

1. Hash the prompt's leading character blocks into a chain (``hashing.prefix_chain``).
2. Ask the ``PrefixIndex`` how many leading blocks each candidate is believed to hold.
3. Score by that match, longest first; equal matches (and no match at all) are ordered by the
   rendezvous-hash order of the prompt's first few blocks, so a new prefix has one stable home that
   every gateway replica agrees on. Both fit in one score: ``(matched + home) / (len(chain) + 1)``
   with ``home`` in [0, 1).
4. Record the chain for the chosen replica: the next request with this prefix will match it.

A prompt shorter than one block scores 0 everywhere (nothing to be affine to): the picker decides.
Reasons: ``prefix_hit`` (the chosen replica has the longest match), ``load_bound`` (a replica with a
longer match was filtered out), ``prefix_miss`` (no replica matched).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from ..hashing import prefix_chain, rendezvous_order
from ..index import PrefixIndex
from ..types import CycleState, EndpointLoad, Reason


class Prefix:
    name: ClassVar[str] = "prefix"
    kind: ClassVar[Literal["scorer"]] = "scorer"

    def __init__(
        self, block_chars: int = 256, max_blocks: int = 128, home_blocks: int = 4, index_capacity: int = 65536
    ) -> None:
        if block_chars < 1 or max_blocks < 1 or home_blocks < 1:
            raise ValueError("block_chars, max_blocks and home_blocks must be >= 1")
        self.block_chars = block_chars
        self.max_blocks = max_blocks
        self.home_blocks = home_blocks
        self.index = PrefixIndex(index_capacity)
        self.prompt_chars = block_chars * max_blocks
        """The prompt's leading characters the chain hashes: the scheduler renders no more than these."""

    def _chain(self, state: CycleState) -> list[bytes]:
        found = state.notes.get("prefix.chain")
        if found is None:
            req = state.request
            found = state.notes["prefix.chain"] = prefix_chain(req.model, req.prompt, self.block_chars, self.max_blocks)
        assert isinstance(found, list)
        return found

    def score(self, state: CycleState, candidates: list[EndpointLoad]) -> dict[str, float]:
        chain = self._chain(state)
        if not chain:
            return dict.fromkeys((c.url for c in candidates), 0.0)
        matched = self.index.match(chain, state.loads)  # every candidate: a filtered-out longer match is load_bound
        state.notes["prefix.matched"] = matched
        home = chain[min(len(chain), self.home_blocks) - 1]
        order = rendezvous_order(home, (c.url for c in candidates))
        n, scale = len(order), len(chain) + 1
        return {url: (matched[url] + (n - 1 - rank) / n) / scale for rank, url in enumerate(order)}

    def reason(self, state: CycleState, url: str) -> Reason | None:
        matched = state.notes.get("prefix.matched")
        if not isinstance(matched, dict):
            return None
        best = max(matched.values())
        if best == 0:
            return "prefix_miss"
        return "prefix_hit" if matched[url] == best else "load_bound"

    def picked(self, state: CycleState, url: str) -> None:
        chain = self._chain(state)
        if not chain:
            return
        matched = state.notes.get("prefix.matched")
        state.prefix_blocks = matched[url] if isinstance(matched, dict) else 0
        self.index.record(chain, url)


PLUGIN = Prefix
