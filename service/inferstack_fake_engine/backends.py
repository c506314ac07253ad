"""Where tokens come from: fixed delays (plain mode) or the replica simulator (sim mode).

Both yield the running count of generated tokens; the HTTP layer turns counts into SSE chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Protocol

from .config import Behaviour, EngineConfig
from .metrics import Snapshot
from .sim import RealtimeReplica, ReplicaModel, SimParams, block_hashes


class Backend(Protocol):
    def generate(self, model: str, prompt: str, prompt_tokens: int, n: int) -> AsyncGenerator[int, None]: ...
    def snapshot(self) -> Snapshot: ...
    def start(self) -> None: ...
    async def stop(self) -> None: ...


class PlainBackend:
    """First token after ``behaviour.ttft``, then one every ``behaviour.itl``; no queue, no cache."""

    def __init__(self, config: EngineConfig) -> None:
        self._behaviour: Behaviour = config.behaviour
        self._max_num_seqs = config.max_num_seqs
        self.running = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def generate(self, model: str, prompt: str, prompt_tokens: int, n: int) -> AsyncGenerator[int, None]:
        b = self._behaviour
        loop = asyncio.get_running_loop()
        self.running += 1
        try:
            if b.ttft > 0:
                await asyncio.sleep(b.ttft)
            self.prompt_tokens += prompt_tokens
            itl = b.itl
            if itl <= 0:
                # No pacing: the whole completion at once (one write instead of n).
                self.generation_tokens += n
                yield n
                return
            due = loop.time()
            for count in range(1, n + 1):
                if count > 1:
                    due += itl
                    await asyncio.sleep(max(0.0, due - loop.time()))
                self.generation_tokens += 1
                yield count
        finally:
            self.running -= 1

    def snapshot(self) -> Snapshot:
        return Snapshot(
            running=self.running,
            waiting=0,
            kv_cache_usage=min(1.0, self.running / self._max_num_seqs),
            prompt_tokens=self.prompt_tokens,
            generation_tokens=self.generation_tokens,
            prefix_queries=self.prompt_tokens,
            prefix_hits=0,
            block_size=16,
            num_blocks=self._max_num_seqs,
        )


class SimBackend:
    """Tokens paced by a ``ReplicaModel`` stepping in real time."""

    def __init__(self, params: SimParams) -> None:
        self._params = params
        self._model = ReplicaModel(params)
        self._replica = RealtimeReplica(self._model)

    def start(self) -> None:
        self._replica.start()

    async def stop(self) -> None:
        await self._replica.stop()

    def generate(self, model: str, prompt: str, prompt_tokens: int, n: int) -> AsyncGenerator[int, None]:
        blocks = block_hashes(model, prompt, self._params.block_size)
        return self._replica.generate(max(1, prompt_tokens), n, blocks)

    def snapshot(self) -> Snapshot:
        m = self._model
        return Snapshot(
            running=m.num_running,
            waiting=m.num_waiting,
            kv_cache_usage=m.kv_cache_usage,
            prompt_tokens=m.prompt_tokens_total,
            generation_tokens=m.generation_tokens_total,
            prefix_queries=m.prefix_queries_total,
            prefix_hits=m.prefix_hits_total,
            block_size=self._params.block_size,
            num_blocks=self._params.num_blocks,
        )


def make_backend(config: EngineConfig) -> Backend:
    return PlainBackend(config) if config.sim is None else SimBackend(config.sim)
