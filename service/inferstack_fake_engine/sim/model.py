"""One vLLM replica as a clock-free state machine: call ``plan_step``, wait its duration, ``finish_step``.

The model, step by step (vLLM V1's scheduler, simplified):

1. Admit waiting sequences, first come first served, while fewer than ``max_num_seqs`` run and the KV
   pool can reserve the sequence's prompt plus ``max_tokens``. On admission the prefix cache is asked
   for the sequence's leading blocks: those tokens need no prefill (at least the last prompt token is
   always computed, as in vLLM).
2. Fill a budget of ``max_batched_tokens``: one token per decoding sequence, the rest goes to
   prefill chunks of admitted sequences in arrival order (chunked prefill).
3. The step takes ``step_base + decode_per_seq * decoders + prefill_per_token * prefill_tokens``:
   decode latency grows with the batch and prefill time with the uncached tokens.
4. At the end of the step every decoding sequence has one more token; a sequence whose prefill
   completed has its first token and its prompt blocks enter the prefix cache. Finished sequences
   free their KV reservation.

Limits, on purpose: no preemption (admission reserves the worst case instead), the prefix cache is a
separate LRU rather than the free part of the KV pool, no speculative decoding, one token per step.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .prefix_cache import PrefixCache


@dataclass(frozen=True)
class SimParams:
    """A replica's shape and speed. The defaults resemble an 8B model on one datacenter GPU."""

    max_num_seqs: int = 32
    max_batched_tokens: int = 2048
    block_size: int = 16
    num_blocks: int = 16384
    """KV pool in blocks, reserved by running sequences (prompt + max_tokens)."""
    cache_blocks: int = 8192
    """Prefix cache capacity in blocks."""
    step_base: float = 0.012
    decode_per_seq: float = 0.0004
    prefill_per_token: float = 0.00008

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_batched_tokens", "block_size", "num_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.max_batched_tokens < self.max_num_seqs:
            raise ValueError("max_batched_tokens must be >= max_num_seqs (every decoder needs a token)")


@dataclass(eq=False)
class SimSequence:
    """A request inside the replica. ``blocks`` is the hash chain of the prompt's full blocks."""

    seq_id: int
    prompt_tokens: int
    max_tokens: int
    blocks: list[bytes] = field(default_factory=list)
    cached_tokens: int = 0
    computed: int = 0
    """Prompt tokens in the KV cache so far (cached + prefilled)."""
    generated: int = 0
    reserved_blocks: int = 0

    @property
    def prefilling(self) -> bool:
        return self.computed < self.prompt_tokens


@dataclass(frozen=True)
class Emission:
    """After a step: sequence ``seq_id`` now has ``generated`` tokens; ``finished`` at ``max_tokens``."""

    seq_id: int
    generated: int
    finished: bool


class ReplicaModel:
    def __init__(self, params: SimParams) -> None:
        self.params = params
        self.cache = PrefixCache(params.cache_blocks)
        self.waiting: deque[SimSequence] = deque()
        self.running: list[SimSequence] = []
        self.reserved_blocks = 0
        self._plan: list[tuple[SimSequence, int]] = []
        # Counters with vLLM's meaning (prefix cache counters are in tokens).
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.prefix_queries_total = 0
        self.prefix_hits_total = 0
        self.finished_total = 0
        self.aborted_total = 0

    # -- what /metrics reports ----------------------------------------------------------------------
    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def kv_cache_usage(self) -> float:
        # Blocks holding the prompt (allocated on admission) and the tokens generated so far.
        bs = self.params.block_size
        used = sum(-(-(s.prompt_tokens + s.generated) // bs) for s in self.running)
        return min(1.0, used / self.params.num_blocks)

    # -- requests -----------------------------------------------------------------------------------
    def add(self, seq: SimSequence) -> None:
        if seq.prompt_tokens < 1 or seq.max_tokens < 1:
            raise ValueError("a sequence needs at least one prompt token and one output token")
        if self._blocks_for(seq) > self.params.num_blocks:
            raise ValueError("sequence larger than the KV pool")
        self.waiting.append(seq)

    def abort(self, seq_id: int) -> None:
        """Drop a sequence (the client went away); a step in progress still completes without it."""
        for queue in (self.waiting, self.running):
            for seq in queue:
                if seq.seq_id == seq_id:
                    queue.remove(seq)
                    self.reserved_blocks -= seq.reserved_blocks
                    seq.reserved_blocks = 0
                    self.aborted_total += 1
                    self._plan = [(s, n) for s, n in self._plan if s is not seq]
                    return

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting

    # -- one engine step ----------------------------------------------------------------------------
    def plan_step(self) -> float | None:
        """Choose the next batch and return its duration in seconds; None when there is nothing to do."""
        self._admit()
        if not self.running:
            self._plan = []
            return None
        p = self.params
        budget = p.max_batched_tokens
        plan: list[tuple[SimSequence, int]] = []
        decoders = 0
        for seq in self.running:
            if not seq.prefilling:
                plan.append((seq, 0))
                decoders += 1
        budget -= decoders
        prefill = 0
        for seq in self.running:
            if seq.prefilling and budget > 0:
                chunk = min(budget, seq.prompt_tokens - seq.computed)
                plan.append((seq, chunk))
                budget -= chunk
                prefill += chunk
        self._plan = plan
        return p.step_base + p.decode_per_seq * decoders + p.prefill_per_token * prefill

    def finish_step(self) -> list[Emission]:
        """Apply the planned step; return the sequences that produced a token."""
        out: list[Emission] = []
        for seq, chunk in self._plan:
            if chunk:
                seq.computed += chunk
                if seq.prefilling:
                    continue
                self.prompt_tokens_total += seq.prompt_tokens  # vLLM counts cached tokens too
                self.cache.insert(seq.blocks)
            seq.generated += 1
            self.generation_tokens_total += 1
            finished = seq.generated >= seq.max_tokens
            if finished:
                self.running.remove(seq)
                self.reserved_blocks -= seq.reserved_blocks
                seq.reserved_blocks = 0
                self.finished_total += 1
            out.append(Emission(seq.seq_id, seq.generated, finished))
        self._plan = []
        return out

    def _admit(self) -> None:
        p = self.params
        while self.waiting and len(self.running) < p.max_num_seqs:
            seq = self.waiting[0]
            need = self._blocks_for(seq)
            if self.reserved_blocks + need > p.num_blocks:
                break
            self.waiting.popleft()
            hit_blocks = self.cache.match(seq.blocks)
            seq.cached_tokens = min(hit_blocks * p.block_size, seq.prompt_tokens - 1)
            seq.computed = seq.cached_tokens
            seq.reserved_blocks = need
            self.reserved_blocks += need
            self.prefix_queries_total += seq.prompt_tokens
            self.prefix_hits_total += seq.cached_tokens
            self.running.append(seq)

    def _blocks_for(self, seq: SimSequence) -> int:
        return -(-(seq.prompt_tokens + seq.max_tokens) // self.params.block_size)
