"""Which replica holds which KV block, from the engines' own events: block hash -> replicas.

Fed by the subscribers (``subscriber.py``), read by the ``precise_prefix`` policy. Unlike the
approximate ``PrefixIndex`` it is not a guess: a block is credited to a replica when the replica says
it stored it, and un-credited when the replica says it removed it.

Bounded: at most ``capacity`` block hashes, least recently stored or matched dropped first (a dropped
block only makes its replicas look colder than they are). Per replica it keeps the set of hashes it
holds (to forget them all at once), the block size it reported, and the sequence number of its last
batch.

Resync rule (no replay): a batch whose sequence number is not the last one plus one means lost
batches (a gap: removals we did not see) or a restarted engine (the number went back: its cache is
empty). Either way the replica's entries are dropped and rebuilt from its next events; until then it
scores as holding nothing. A replica whose stream is silent while it owes us events (``expect``: a
request was sent to it with blocks it did not hold, more than ``stale_after`` seconds ago) is stale:
the policy stops trusting its view and falls back to the approximate index.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from .wire import AllBlocksCleared, Batch, BlockRemoved, BlockStored

K = TypeVar("K", bound=Hashable)


def leading_match(
    chain: Sequence[K], urls: Collection[str], holders_of: Callable[[K], Collection[str] | None]
) -> dict[str, int]:
    """For each of ``urls``, how many leading blocks of ``chain`` it holds by ``holders_of`` (0 if none)."""
    matched = dict.fromkeys(urls, 0)
    alive = set(urls)
    for i, h in enumerate(chain):
        holders = holders_of(h)
        if holders is None:
            break
        alive.intersection_update(holders)
        if not alive:
            break
        for url in alive:
            matched[url] = i + 1
    return matched


@dataclass
class ReplicaView:
    block_size: int | None = None
    last_seq: int | None = None
    last_event: float | None = None
    """Monotonic time the last batch arrived."""
    lag: float = 0.0
    """Seconds between the engine publishing the last batch and the gateway applying it (wall clocks)."""
    owed_since: float | None = None
    """Monotonic time of the oldest request sent here since the last batch that must produce events."""
    held: set[int] = field(default_factory=set)


class KVIndex:
    def __init__(self, capacity: int = 262_144, stale_after: float = 5.0) -> None:
        if capacity < 1 or stale_after <= 0:
            raise ValueError("capacity must be >= 1 and stale_after > 0")
        self.capacity = capacity
        self.stale_after = stale_after
        self._blocks: OrderedDict[int, tuple[str, ...]] = OrderedDict()
        self._replicas: dict[str, ReplicaView] = {}
        self.resyncs: dict[str, int] = {"gap": 0, "restart": 0, "cleared": 0}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._blocks)

    @property
    def replicas(self) -> dict[str, ReplicaView]:
        return self._replicas

    # -- writers (the subscribers) ------------------------------------------------------------------
    def join(self, url: str) -> None:
        self._replicas.setdefault(url, ReplicaView())

    def leave(self, url: str) -> None:
        for _ in self.leaving(url, None):
            pass

    def leaving(self, url: str, step: int | None) -> Iterator[None]:
        """``leave``, pausing after every ``step`` blocks dropped (None: never)."""
        if url in self._replicas:
            yield from self._forgetting(url, step)
            del self._replicas[url]

    def apply(self, url: str, batch: Batch, now: float, wall_now: float) -> None:
        """A batch, or a part of one (``wire.decode_parts``): a later part carries on from the first,
        whose sequence number was checked."""
        for _ in self.applying(url, batch, now, wall_now, None):
            pass

    def applying(self, url: str, batch: Batch, now: float, wall_now: float, step: int | None) -> Iterator[None]:
        """``apply``, pausing (a ``yield``) after every ``step`` blocks a resync drops (None: never).
        Dropping a replica's view walks every block it held (262,144 at most); the subscriber lets
        the event loop run at each pause. Meanwhile the rest of that view is still credited, as it
        was until the gap was seen."""
        view = self._replicas.setdefault(url, ReplicaView())
        if batch.part == 0:
            if view.last_seq is not None and batch.seq != view.last_seq + 1:
                self.resyncs["restart" if batch.seq <= view.last_seq else "gap"] += 1
                yield from self._forgetting(url, step)
            view.last_seq, view.owed_since = batch.seq, None
            view.lag = max(0.0, wall_now - batch.ts)
        view.last_event = now
        for event in batch.events:
            if isinstance(event, BlockStored):
                view.block_size = event.block_size
                self._store(url, view, event.block_hashes)
            elif isinstance(event, BlockRemoved):
                self._remove(url, view, event.block_hashes)
            elif isinstance(event, AllBlocksCleared):
                self.resyncs["cleared"] += 1
                yield from self._forgetting(url, step)

    def abandoning(self, url: str, step: int | None) -> Iterator[None]:
        """A message was malformed past its first applied part: the rest of it is lost, as in a gap,
        so the replica's view is dropped (``step`` blocks at a time, as a gap's) and rebuilt from its
        next events."""
        if url in self._replicas:
            self.resyncs["gap"] += 1
            yield from self._forgetting(url, step)

    def _store(self, url: str, view: ReplicaView, hashes: Iterable[int]) -> None:
        blocks = self._blocks
        for h in hashes:
            holders = blocks.get(h)
            if holders is None:
                blocks[h] = (url,)
            else:
                if url not in holders:
                    blocks[h] = (*holders, url)
                blocks.move_to_end(h)
            view.held.add(h)
        while len(blocks) > self.capacity:
            h, holders = blocks.popitem(last=False)
            self.evicted += 1
            for u in holders:
                self._replicas[u].held.discard(h)

    def _remove(self, url: str, view: ReplicaView, hashes: Iterable[int]) -> None:
        for h in hashes:
            view.held.discard(h)
            holders = self._blocks.get(h)
            if holders is None or url not in holders:
                continue
            rest = tuple(u for u in holders if u != url)
            if rest:
                self._blocks[h] = rest
            else:
                del self._blocks[h]

    def _forgetting(self, url: str, step: int | None) -> Iterator[None]:
        """Drop the blocks ``url`` holds, ``step`` at a time (None: all at once). Each is discarded
        from ``held`` as it goes, so a ``leave`` during a pause drops the rest."""
        view = self._replicas[url]
        held = list(view.held)
        size = step or len(held) or 1
        for i in range(0, len(held), size):
            if i:
                yield
            self._remove(url, view, held[i : i + size])

    # -- readers (the policy) -----------------------------------------------------------------------
    def block_size(self, url: str) -> int | None:
        view = self._replicas.get(url)
        return None if view is None else view.block_size

    def fresh(self, url: str, now: float) -> bool:
        """True when ``url``'s view can be trusted: it has reported events and owes none for long."""
        view = self._replicas.get(url)
        if view is None or view.block_size is None:
            return False
        return view.owed_since is None or now - view.owed_since <= self.stale_after

    def match(self, chain: Sequence[int], urls: Collection[str]) -> dict[str, int]:
        """For each of ``urls``, how many leading blocks of ``chain`` it holds (0 if none)."""
        blocks = self._blocks

        def holders_of(h: int) -> tuple[str, ...] | None:
            found = blocks.get(h)
            if found is not None:
                blocks.move_to_end(h)  # matched blocks are hot in the engine's LRU too
            return found

        return leading_match(chain, urls, holders_of)

    def expect(self, url: str, now: float) -> None:
        """A request that must make ``url`` store blocks was just sent there: it owes us events."""
        view = self._replicas.get(url)
        if view is not None and view.owed_since is None:
            view.owed_since = now
