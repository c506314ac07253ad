"""LoRA adapters as vLLM 0.32 handles them, without weights: registration, slots, LRU, load time.

- *Registered* adapters (``lora_modules`` at start, ``POST /v1/load_lora_adapter`` at run time) are
  listed in ``/v1/models`` with their ``parent`` and stay listed when evicted, as in vLLM.
- *Resident* adapters: an LRU cache of ``max_loras`` slots (vLLM's ``max_cpu_loras`` defaults to
  ``max_loras``). A request for a registered adapter that is not resident loads it (``lora_load_delay``
  seconds, one load at a time, as vLLM loads in its engine loop) and evicts the least recently used
  adapter without requests running. A runtime load makes the adapter resident the same way.
- At most ``max_loras`` distinct adapters run at once (vLLM's scheduler): a request for another one
  waits until a slot's adapter has no request running; ``vllm:lora_requests_info`` names the
  running and waiting adapters.
- ``loads`` counts every load into a slot (runtime loads and swaps): ``fake_engine_lora_loads_total``.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter, OrderedDict
from dataclasses import dataclass, field


class LoraError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Loras:
    max_loras: int
    registered: dict[str, str] = field(default_factory=dict)
    """Adapter name -> path."""
    resident: OrderedDict[str, None] = field(default_factory=OrderedDict)
    running: Counter[str] = field(default_factory=Counter)
    waiting: Counter[str] = field(default_factory=Counter)
    loads: Counter[str] = field(default_factory=Counter)
    _changed: asyncio.Condition | None = None
    _loading: asyncio.Lock | None = None

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    def register(self, name: str, path: str, base_models: tuple[str, ...]) -> None:
        """``POST /v1/load_lora_adapter``'s checks, as vLLM answers them; the caller loads it next."""
        if not name or not path:
            raise LoraError("Both 'lora_name' and 'lora_path' must be provided.", 400)
        if name in base_models:
            raise LoraError(f"The lora adapter '{name}' conflicts with a served base model.", 400)
        if name in self.registered:
            raise LoraError(
                f"The lora adapter '{name}' has already been loaded. If you want to load the adapter in place,"
                " set 'load_inplace' to True.",
                400,
            )
        if not os.path.isdir(path):
            raise LoraError(f"Loading lora {name} failed: No adapter found for {path}", 404)
        self.registered[name] = path

    async def load(self, name: str, delay: float) -> None:
        """Make ``name`` resident (a runtime load): wait for an evictable slot, then the load delay."""
        async with self._cond():
            await self._cond().wait_for(lambda: name in self.resident or self._evictable())
            await self._fill(name, delay)

    async def acquire(self, name: str, delay: float) -> None:
        """A request for ``name`` starts running: it waits for a slot (and loads the adapter) first."""
        cond = self._cond()
        async with cond:
            self.waiting[name] += 1
            try:
                await cond.wait_for(lambda: name in self.running or self._distinct_running() < self.max_loras)
                if name not in self.resident:
                    await self._fill(name, delay)
                self.resident.move_to_end(name)
            finally:
                self.waiting[name] -= 1
                if not self.waiting[name]:
                    del self.waiting[name]
            self.running[name] += 1

    async def release(self, name: str) -> None:
        cond = self._cond()
        async with cond:
            self.running[name] -= 1
            if not self.running[name]:
                del self.running[name]
            cond.notify_all()

    def _distinct_running(self) -> int:
        return sum(1 for n in self.running.values() if n > 0)

    def _evictable(self) -> bool:
        return len(self.resident) < self.max_loras or any(a not in self.running for a in self.resident)

    async def _fill(self, name: str, delay: float) -> None:
        """Load ``name`` into a slot (called holding the condition's lock: loads are serial)."""
        if name in self.resident:
            return
        if delay > 0:
            await asyncio.sleep(delay)
        while len(self.resident) >= self.max_loras:
            victim = next(a for a in self.resident if a not in self.running)
            del self.resident[victim]
        self.resident[name] = None
        self.loads[name] += 1

    def as_dict(self) -> dict[str, object]:
        return {
            "max_loras": self.max_loras,
            "registered": sorted(self.registered),
            "resident": list(self.resident),
            "running": dict(self.running),
            "waiting": dict(self.waiting),
            "loads": dict(self.loads),
        }
