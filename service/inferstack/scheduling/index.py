"""Which replica probably holds which prefix: a bounded LRU learned from routing decisions.

Nothing asks the engines: a prefix is recorded for the replica it was sent to, on the bet that the
replica's prefix cache now holds it (llm-d's approximate prefix index does the same). Memory is
bounded twice: at most ``capacity`` block hashes (least recently used dropped first) and at most
``replicas_per_block`` replicas per block (the most recent kept). Stale entries (a replica that
evicted the prefix or left) only cost a weaker guess; they age out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Sequence

from ..kvcache.index import leading_match


class PrefixIndex:
    __slots__ = ("_blocks", "capacity", "replicas_per_block")

    def __init__(self, capacity: int = 65536, replicas_per_block: int = 4) -> None:
        if capacity < 1 or replicas_per_block < 1:
            raise ValueError("capacity and replicas_per_block must be >= 1")
        self.capacity = capacity
        self.replicas_per_block = replicas_per_block
        self._blocks: OrderedDict[bytes, tuple[str, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def match(self, chain: Sequence[bytes], urls: Collection[str]) -> dict[str, int]:
        """For each of ``urls``, how many leading blocks of ``chain`` it is believed to hold (0 if none)."""
        return leading_match(chain, urls, self._blocks.get)

    def record(self, chain: Sequence[bytes], url: str) -> None:
        """``url`` now holds every block of ``chain``."""
        blocks, keep = self._blocks, self.replicas_per_block
        # Tail first, so the head of the chain is the most recently used and is evicted last.
        for h in reversed(chain):
            holders = blocks.get(h)
            if holders is None:
                blocks[h] = (url,)
            else:
                if holders[-1] != url:
                    holders = (*(u for u in holders if u != url), url)[-keep:]
                    blocks[h] = holders
                blocks.move_to_end(h)
        while len(blocks) > self.capacity:
            blocks.popitem(last=False)
