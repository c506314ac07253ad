"""Scorer ``precise_prefix``: prefer the replica that *reports* holding the longest prefix of the prompt.

The engines publish which KV blocks they store and evict (``kvcache/``); the scheduler gives the
request its token ids (the gateway's own tokenizer, checked against the engine's ``/tokenize``, or
that ``/tokenize``) and this scorer computes the block hashes the
engine computes (``kvcache.blocks``), so the match is exact, block by block, per replica:

    score = leading blocks the replica holds / blocks in the prompt     (0 for a stale view)

It falls back to the approximate ``prefix`` scorer (which it wraps, and keeps learning from every
decision so the fallback starts warm) when the request has no token ids (reason ``no_tokens``) or
no candidate has a fresh view (``no_events``: no events yet, or events owed for too long). The
index is the lifespan's: the scheduler hands it over with ``attach`` (without one, always
``no_events``). Combine it with ``load`` and ``kv_cache`` scorers and the ``bounded_load`` filter
(the built-in ``precise_prefix`` profile does).

Reasons: ``prefix_hit`` (the chosen replica holds the longest prefix), ``load_bound`` (one holding
more was filtered out or lost on load), ``prefix_miss`` (no fresh replica holds any block),
``no_tokens``, ``no_events``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar, Literal

from ...kvcache.blocks import DEFAULT_SEED, prompt_block_hashes
from ...kvcache.index import KVIndex
from ..types import CycleState, EndpointLoad, Reason
from .prefix import Prefix

_NOTE = "precise_prefix"


class PrecisePrefix:
    name: ClassVar[str] = "precise_prefix"
    kind: ClassVar[Literal["scorer"]] = "scorer"
    reads_tokens: ClassVar[bool] = True

    def __init__(
        self, block_chars: int = 256, max_blocks: int = 128, home_blocks: int = 4, index_capacity: int = 65536
    ) -> None:
        self.approximate = Prefix(block_chars, max_blocks, home_blocks, index_capacity)
        self.index: KVIndex | None = None
        self.hash_seed = DEFAULT_SEED
        self.kv_max_blocks = 512
        self._clock: Callable[[], float] = time.monotonic

    def attach(
        self,
        index: KVIndex,
        *,
        hash_seed: str = DEFAULT_SEED,
        max_blocks: int = 512,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Read ``index`` (the engines' KV events) from now on."""
        self.index, self.hash_seed, self.kv_max_blocks, self._clock = index, hash_seed, max_blocks, clock

    def score(self, state: CycleState, candidates: list[EndpointLoad]) -> dict[str, float]:
        index, req = self.index, state.request
        now = self._clock()
        fresh = [c.url for c in state.candidates if index is not None and index.fresh(c.url, now)]
        if index is None or req.token_ids is None or not fresh:
            state.notes[_NOTE] = ("no_tokens" if index is not None and req.token_ids is None else "no_events", now)
            return self.approximate.score(state, candidates)
        chains: dict[int, list[int]] = {}
        held = dict.fromkeys((c.url for c in state.candidates), 0)
        total = dict.fromkeys(held, 0)
        for url in fresh:  # every candidate, so a filtered-out longer match explains load_bound
            size = index.block_size(url)
            assert size is not None  # a fresh view knows its block size
            if size not in chains:
                chains[size] = prompt_block_hashes(
                    req.token_ids, size, seed=self.hash_seed, cache_salt=req.cache_salt, max_blocks=self.kv_max_blocks
                )
            total[url] = len(chains[size])
            if chains[size]:
                held[url] = index.match(chains[size], [url])[url]
        state.notes[_NOTE] = (held, total, now)
        return {c.url: held[c.url] / total[c.url] if total[c.url] else 0.0 for c in candidates}

    def reason(self, state: CycleState, url: str) -> Reason | None:
        note = state.notes.get(_NOTE)
        if not isinstance(note, tuple):
            return None
        if len(note) == 2:
            return note[0]  # type: ignore[no-any-return]
        held = note[0]
        best = max(held.values())
        if best == 0:
            return "prefix_miss"
        return "prefix_hit" if held[url] == best else "load_bound"

    def picked(self, state: CycleState, url: str) -> None:
        if _NOTE not in state.notes:  # the only candidate: nothing was scored, but the index must learn
            self.score(state, list(state.candidates))
        self.approximate.picked(state, url)  # the fallback keeps learning
        note = state.notes.get(_NOTE)
        if self.index is None or not isinstance(note, tuple):
            return
        now = note[-1]
        if len(note) == 3:
            held, total = note[0], note[1]
            state.prefix_blocks = held.get(url, 0)
            if url in total and held.get(url, 0) >= total[url]:
                # Nothing new for it to store, a prompt shorter than one block included: owing
                # events it will not send would mark a healthy view stale.
                return
        if state.request.token_ids:
            self.index.expect(url, now)  # it will store blocks: its events are owed from now


PLUGIN = PrecisePrefix
