"""Scorer ``kv_cache``: free KV cache, 1 - ``vllm:kv_cache_usage_perc`` (0.5 while unknown or stale)."""

from __future__ import annotations

from typing import ClassVar, Literal

from ..types import CycleState, EndpointLoad


class KVCache:
    name: ClassVar[str] = "kv_cache"
    kind: ClassVar[Literal["scorer"]] = "scorer"

    def score(self, state: CycleState, candidates: list[EndpointLoad]) -> dict[str, float]:
        return {c.url: 0.5 if c.kv_cache_usage is None else 1.0 - c.kv_cache_usage for c in candidates}


PLUGIN = KVCache
