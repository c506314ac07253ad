"""Loading LoRA adapters on demand: the gateway asks the chosen replica to load one it lacks.

Before a request for an adapter goes to a replica that does not list it, the gateway sends that
replica ``POST /v1/load_lora_adapter {"lora_name", "lora_path"}`` (vLLM with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; docs/adapters.md says why this and not vLLM's LoRA
resolver plugins). So a replica that scaled out serves every adapter, and the gateway knows what it
loaded where.

- One load per (replica, adapter) at a time: concurrent requests wait for the same load.
- Each load has a deadline (``adapters.load_timeout``, never past the request's own); a request that
  stops waiting (its deadline, its client left) does not cancel the load others wait for.
- A failed load fails the attempt before anything was sent (``AttemptError`` kind ``adapter_load``):
  the router retries on another replica as for any failed attempt. vLLM's "already loaded" answer
  counts as loaded (another gateway, or a stale view of the replica's adapters).
- Slots: vLLM holds ``max_loras`` adapters and evicts the least recently used to load another; the
  gateway only records what it sent (``AdapterPlacement``) and counts loads and predicted swaps.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import orjson

from ..bounds import LOAD_ANSWER_BYTES, TooLarge, read_bounded
from ..catalog import Catalog
from ..clock import monotonic
from ..config import Settings
from ..errors import UpstreamError
from ..metrics.gateway import GatewayMetrics
from ..tasks import stop
from .adapters import AdapterPlacement
from .endpoint import Endpoint
from .failures import AttemptError

log = logging.getLogger("inferstack.upstream")

LOAD_PATH = "/v1/load_lora_adapter"


class AdapterLoader:
    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        catalog: Catalog | None,
        placement: AdapterPlacement,
        metrics: GatewayMetrics,
    ) -> None:
        self._settings = settings.adapters
        self._session = session
        self._catalog = catalog
        self._placement = placement
        self._metrics = metrics
        self._loads: dict[tuple[str, str], asyncio.Task[None]] = {}

    def loadable(self) -> dict[str, str]:
        """Adapter versions the gateway can load (served name -> base): the catalogued ones with a source."""
        if not self._settings.load or self._catalog is None:
            return {}
        root = self._settings.root
        return {
            served: v.base
            for served, v in self._catalog.versions.items()
            if self._catalog.adapter_path(served, root) is not None
        }

    def handles(self, model: str) -> bool:
        """Is ``model`` an adapter (catalogued, or listed by an engine with a parent)?"""
        return self._placement.base_of(model) is not None

    async def prepare(self, endpoint: Endpoint, model: str, deadline: float) -> AttemptError | None:
        """Make ``endpoint`` ready for a request for ``model`` (load the adapter if it lacks it), by
        monotonic ``deadline``; the failure, if any. Every call that returns None is paired with ``done``."""
        placement = self._placement
        base = placement.base_of(model)
        if base is None:
            return None
        url = endpoint.url
        known = model in endpoint.models or placement.registered(url, model)
        path = self._catalog.adapter_path(model, self._settings.root) if self._catalog is not None else None
        # Recorded before the first await: the next decision already sees the adapter placed here.
        swapped = placement.sent(url, model)
        if not known and path is not None and self._settings.load:
            try:
                failure = await self._await_load(url, base, model, path, deadline)
            except BaseException:  # the client left while it waited: the load goes on for others
                placement.done(url, model)
                raise
            if failure is not None:
                placement.failed(url, model)
                return failure
        elif swapped and known:
            self._metrics.child(self._metrics.adapter_loads, base, model, "swap").inc()
        return None

    async def _await_load(self, url: str, base: str, model: str, path: str, deadline: float) -> AttemptError | None:
        key = (url, model)
        task = self._loads.get(key)
        if task is None:
            task = self._loads[key] = asyncio.create_task(self._load(url, base, model, path), name=f"load {model}")
            task.add_done_callback(lambda t: self._settled(key, t))
        wait = min(self._settings.load_timeout, deadline - monotonic())
        try:
            async with asyncio.timeout(max(wait, 0.0)):
                await asyncio.shield(task)
        except TimeoutError:
            return AttemptError("adapter_load", UpstreamError(f"The replica did not load adapter '{model}' in time."))
        except AttemptError as failure:
            return failure
        return None

    def _settled(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        self._loads.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have stopped waiting

    def done(self, endpoint: Endpoint, model: str) -> None:
        self._placement.done(endpoint.url, model)

    async def close(self) -> None:
        await stop(self._loads.values())

    async def _load(self, url: str, base: str, model: str, path: str) -> None:
        """One runtime load; raises AttemptError (counted) when it fails."""
        metrics = self._metrics
        started = monotonic()
        body = orjson.dumps({"lora_name": model, "lora_path": path})
        headers = {"content-type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=self._settings.load_timeout)
        reason = ""
        try:
            async with self._session.post(url + LOAD_PATH, data=body, headers=headers, timeout=timeout) as resp:
                # The answer is a short message: read up to its bound (one that does not end must not
                # hold every waiter until load_timeout), and not at all when it is a success.
                try:
                    text = (
                        ""
                        if resp.status == 200
                        else (await read_bounded(resp, LOAD_ANSWER_BYTES)).decode(errors="replace")
                    )
                except TooLarge:
                    text = f"an answer over {LOAD_ANSWER_BYTES} bytes"
                if resp.status == 200 or (resp.status == 400 and "already been loaded" in text):
                    self._placement.loaded(url, model)
                    if resp.status == 200:
                        metrics.child(metrics.adapter_loads, base, model, "runtime_load").inc()
                        metrics.child(metrics.adapter_load_duration, base).observe(monotonic() - started)
                        log.info("adapter loaded", extra={"upstream": url, "model": model, "path": path})
                    return
                reason, detail = "status", f"status {resp.status}: {text[:200]}"
        except (TimeoutError, aiohttp.ServerTimeoutError):
            reason, detail = "timeout", "timed out"
        except (aiohttp.ClientError, OSError) as exc:
            reason, detail = "connect", type(exc).__name__
        metrics.child(metrics.adapter_load_failures, base, model, reason).inc()
        log.warning("adapter load failed", extra={"upstream": url, "model": model, "path": path, "detail": detail})
        raise AttemptError("adapter_load", UpstreamError(f"The replica could not load adapter '{model}'."))
