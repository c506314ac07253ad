"""Run a ``ReplicaModel`` on the event loop's clock: one task steps the engine, requests await tokens.

One task per replica (not one timer per stream) keeps the fake engine cheap at many concurrent
streams: each step wakes the loop once and hands every sequence its new token count.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator

from .model import Emission, ReplicaModel, SimSequence

_MAX_LAG = 0.05


class RealtimeReplica:
    def __init__(self, model: ReplicaModel) -> None:
        self.model = model
        self._ids = itertools.count(1)
        self._queues: dict[int, asyncio.Queue[Emission]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fake-engine-sim")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def generate(self, prompt_tokens: int, max_tokens: int, blocks: list[bytes]) -> AsyncGenerator[int, None]:
        """Yield the running count of generated tokens as the engine produces them."""
        seq = SimSequence(next(self._ids), prompt_tokens, max_tokens, blocks)
        queue: asyncio.Queue[Emission] = asyncio.Queue()
        self._queues[seq.seq_id] = queue
        self.model.add(seq)
        self._wake.set()
        finished = False
        try:
            while not finished:
                emission = await queue.get()
                finished = emission.finished
                yield emission.generated
        finally:
            del self._queues[seq.seq_id]
            if not finished:
                self.model.abort(seq.seq_id)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        clock = loop.time()
        while True:
            duration = self.model.plan_step()
            if duration is None:
                self._wake.clear()
                await self._wake.wait()
                clock = loop.time()
                continue
            # Back-to-back steps keep their own clock, so a late wake-up shortens the next sleep
            # instead of adding up as drift (catching up on at most _MAX_LAG).
            clock = max(clock, loop.time() - _MAX_LAG) + duration
            await asyncio.sleep(max(0.0, clock - loop.time()))
            for emission in self.model.finish_step():
                queue = self._queues.get(emission.seq_id)
                if queue is not None:
                    queue.put_nowait(emission)
