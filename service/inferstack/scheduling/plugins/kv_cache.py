"""Scorer ``kv_cache``: free KV cache, 1 - ``vllm:kv_cache_usage_perc`` (0.5 while unknown or stale).

Unknown counts as half full here and in ``max_score``'s tie-break alike (``scheduling.load.kv_usage``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from ..load import kv_usage
from ..types import CycleState, EndpointLoad


class KVCache:
    name: ClassVar[str] = "kv_cache"
    kind: ClassVar[Literal["scorer"]] = "scorer"

    def score(self, state: CycleState, candidates: list[EndpointLoad]) -> dict[str, float]:
        return {c.url: 1.0 - kv_usage(c) for c in candidates}


PLUGIN = KVCache
