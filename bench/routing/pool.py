"""One vLLM v1 replica whose prefix cache is its KV block pool, as vLLM's ``BlockPool`` has it.

The fake engine's ``ReplicaModel`` keeps a prefix cache apart from the blocks running requests hold;
a real vLLM v1 engine has one pool of ``num_blocks`` blocks and its prefix cache is whatever full
blocks still carry a hash. What this model copies, from vLLM 0.32's ``vllm/v1/core`` (the version
``.venv-engine`` runs for ``bench/routing_real``):

- ``BlockPool.get_new_blocks``: new blocks are popped from the head of the free queue; a popped
  block that carried a hash is evicted then (``_maybe_evict_cached_block``: a ``BlockRemoved`` event).
  Blocks a running request holds (ref count > 0) are never in the free queue, so never evicted.
- ``BlockPool.free_blocks`` / ``KVCacheManager.free``: a finished request's blocks are released in
  reverse order; hashed ones go to the tail of the free queue (LRU, the prefix's head last), blocks
  without a hash (the partial last block, generated tokens) to its head (reused first).
- ``BlockPool.touch``: a prefix hit on a free block takes it out of the free queue (ref count + 1);
  a hit on a block another running request holds shares it.
- ``KVCacheManager.get_computed_blocks``: the longest run of leading blocks whose hash is cached,
  capped at ``prompt - 1`` tokens (the last token is always computed).
- ``allocate_slots(full_sequence_must_fit=True)`` (``scheduler_reserve_full_isl``, on by default):
  a waiting request is admitted, first come first served, only if the blocks its whole prompt
  still needs (new ones, plus hit blocks that are free now) fit in the free queue; otherwise it waits
  and so does everyone behind it (the scheduler ``break``s). Hits and queries are counted at admission
  ("Record at admission so unscheduled lookups are not counted").
- ``get_usage``: 1 - free / total.

Simplifications, on purpose: a prompt's blocks are all taken at admission (vLLM takes them chunk by
chunk; the admission gate already requires that they fit) and get their hash when its prefill
completes; the blocks its output will need are promised at admission and taken from the free queue
as decoding fills them, so a running request is never preempted (vLLM would preempt the newest);
generated tokens' blocks carry no hash (the benches' next turn carries fixed answer text, not the
output); two requests computing the same block keep one hashed copy.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from inferstack_fake_engine.sim import Emission, ReplicaModel, SimParams


class BlockPool:
    """``num_blocks`` blocks: a hash map of cached blocks and an LRU free queue (head evicted first)."""

    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 1:
            raise ValueError("num_blocks must be >= 1")
        self.num_blocks = num_blocks
        self.ref = [0] * num_blocks
        self.hash_of: list[bytes | None] = [None] * num_blocks
        self.cached: dict[bytes, int] = {}
        self.free: OrderedDict[int, None] = OrderedDict((b, None) for b in range(num_blocks))
        self.events: list[tuple[bool, bytes]] | None = None
        """When a list, (True, hash) for every block cached and (False, hash) for every block evicted, in
        order (the simulator publishes them as KV events: ``BlockStored`` / ``BlockRemoved``)."""
        self.evictions = 0

    def held(self, chain: Sequence[bytes]) -> int:
        """Leading blocks of ``chain`` with a cached block, free or in use (what KV events report)."""
        n = 0
        for h in chain:
            if h not in self.cached:
                break
            n += 1
        return n

    def hit_blocks(self, chain: Sequence[bytes], limit: int) -> list[int]:
        return [self.cached[h] for h in chain[: min(self.held(chain), limit)]]

    def touch(self, blocks: Sequence[int]) -> None:
        for b in blocks:
            if self.ref[b] == 0:
                del self.free[b]
            self.ref[b] += 1

    def take(self, n: int) -> list[int]:
        if n > len(self.free):
            raise ValueError(f"cannot take {n} blocks, {len(self.free)} free")
        out = []
        for _ in range(n):
            b, _ = self.free.popitem(last=False)
            h = self.hash_of[b]
            if h is not None:  # the LRU cached block goes: its hash leaves the cache
                self.hash_of[b] = None
                del self.cached[h]
                self.evictions += 1
                if self.events is not None:
                    self.events.append((False, h))
            self.ref[b] = 1
            out.append(b)
        return out

    def set_hash(self, b: int, h: bytes) -> None:
        if h not in self.cached and self.hash_of[b] is None:
            self.hash_of[b] = h
            self.cached[h] = b
            if self.events is not None:
                self.events.append((True, h))

    def release(self, blocks: Sequence[int]) -> None:
        """Free a request's blocks, tail first: cached ones to the queue's tail, the rest to its head."""
        anonymous = []
        for b in reversed(blocks):
            self.ref[b] -= 1
            if self.ref[b] == 0:
                if self.hash_of[b] is None:
                    anonymous.append(b)
                else:
                    self.free[b] = None
        for b in anonymous:
            self.free[b] = None
            self.free.move_to_end(b, last=False)

    def clear(self) -> None:
        """A new process: nothing cached (only when no block is in use)."""
        assert not any(self.ref)
        self.hash_of = [None] * self.num_blocks
        self.cached = {}
        self.free = OrderedDict((b, None) for b in range(self.num_blocks))


class PoolReplica(ReplicaModel):
    """``ReplicaModel`` (its batch planning, step timing, queues and counters) on one pool: what it
    holds in memory and admits is this pool's; ``params.cache_blocks`` is not used (the cache is the
    pool). No aborts: the benches never cancel a request.
    """

    def __init__(self, params: SimParams) -> None:
        super().__init__(params)
        self.pool = BlockPool(params.num_blocks)
        self.blocks: dict[int, list[int]] = {}
        """Blocks each running sequence holds, in order."""
        self.promised = 0
        """Blocks running sequences will still take for their output (taken as decoding fills them)."""

    @property
    def kv_cache_usage(self) -> float:
        return 1.0 - len(self.pool.free) / self.params.num_blocks

    def held(self, chain: Sequence[bytes]) -> int:
        return self.pool.held(chain)

    def abort(self, seq_id: int) -> None:
        raise NotImplementedError("the pool model has no aborts")

    def reset(self) -> None:
        """A restarted process: an empty pool (only when idle)."""
        assert self.idle
        self.pool.clear()

    def finish_step(self) -> list[Emission]:
        bs = self.params.block_size
        out: list[Emission] = []
        for seq, chunk in self._plan:
            if chunk:
                seq.computed += chunk
                if seq.prefilling:
                    continue
                self.prompt_tokens_total += seq.prompt_tokens
                for b, h in zip(self.blocks[seq.seq_id], seq.blocks, strict=False):
                    self.pool.set_hash(b, h)  # the prompt's full blocks enter the prefix cache
            seq.generated += 1
            self.generation_tokens_total += 1
            held = self.blocks[seq.seq_id]
            if len(held) * bs < seq.prompt_tokens + seq.generated:  # the last block is full: one more
                held.extend(self.pool.take(1))
                self.promised -= 1
            finished = seq.generated >= seq.max_tokens
            if finished:
                self.running.remove(seq)
                self.promised -= self._blocks_for(seq) - len(held)
                self.pool.release(self.blocks.pop(seq.seq_id))
                self.finished_total += 1
            out.append(Emission(seq.seq_id, seq.generated, finished))
        self._plan = []
        return out

    def _admit(self) -> None:
        p = self.params
        bs = p.block_size
        budget = p.max_batched_tokens - sum(1 for s in self.running if not s.prefilling)
        while self.waiting and len(self.running) < p.max_num_seqs and budget > 0:
            seq = self.waiting[0]
            hits = self.pool.hit_blocks(seq.blocks, (seq.prompt_tokens - 1) // bs)
            prompt_blocks = -(-seq.prompt_tokens // bs)
            later = self._blocks_for(seq) - prompt_blocks
            need = prompt_blocks - len(hits) + sum(1 for b in hits if self.pool.ref[b] == 0)
            if need + later > len(self.pool.free) - self.promised:
                break  # head-of-line: the scheduler stops at the first request that does not fit
            self.waiting.popleft()
            self.pool.touch(hits)
            self.blocks[seq.seq_id] = hits + self.pool.take(prompt_blocks - len(hits))
            self.promised += later
            seq.cached_tokens = len(hits) * bs
            seq.computed = seq.cached_tokens
            budget -= seq.prompt_tokens - seq.computed
            self.prefix_queries_total += seq.prompt_tokens
            self.prefix_hits_total += seq.cached_tokens
            self.running.append(seq)
