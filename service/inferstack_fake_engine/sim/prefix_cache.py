"""The simulated engine's prefix cache: an LRU of block hashes with a fixed capacity in blocks.

A chain is touched from its last block to its first, so the first block is the most recently used:
eviction then eats a prefix from its tail, the way vLLM frees a finished request's blocks in reverse
order. Evicting a chain's head first would leave blocks that can never match again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixCache:
    __slots__ = ("_blocks", "capacity", "evicted_log", "evictions")

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self.evictions = 0
        self.evicted_log: list[bytes] | None = None
        """When a list, every evicted hash is appended to it (the simulator publishes them as KV events)."""
        self._blocks: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def match(self, chain: Sequence[bytes]) -> int:
        """Leading blocks of ``chain`` that are cached; the matched blocks become most recently used."""
        n = self.held(chain)
        for i in range(n - 1, -1, -1):
            self._blocks.move_to_end(chain[i])
        return n

    def held(self, chain: Sequence[bytes]) -> int:
        """Leading blocks of ``chain`` that are cached, without touching the LRU order (an observer's look)."""
        n = 0
        for h in chain:
            if h not in self._blocks:
                break
            n += 1
        return n

    def insert(self, chain: Sequence[bytes]) -> None:
        """Cache every block of ``chain``, evicting the least recently used beyond capacity."""
        for h in reversed(chain):
            if h in self._blocks:
                self._blocks.move_to_end(h)
            else:
                self._blocks[h] = None
        overflow = len(self._blocks) - self.capacity
        for _ in range(max(0, overflow)):
            h, _ = self._blocks.popitem(last=False)
            if self.evicted_log is not None:
                self.evicted_log.append(h)
        self.evictions += max(0, overflow)
