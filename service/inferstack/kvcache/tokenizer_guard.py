"""The gateway's own tokenizer per model, trusted only as far as the engine's ``/tokenize`` agrees with it.

A local tokenizer that drifts from vLLM (another template on the engine, a tokenizer class that
transformers adjusts in code, a vLLM upgrade) fails silently: every hash matches nothing. So:

- **probation**: a model's first ``check_first`` requests are routed by the engine's ``/tokenize``
  as before, and the local ids are compared with its answer (no extra call); when ``/tokenize``
  gives no answer (slow, down) the check counts as ``failed`` and the request is routed by the local
  ids, which nothing has contradicted (``KVRouting.token_ids``);
- **sampling**: afterwards the local ids route, and ``check_fraction`` of requests are compared
  again in the background (one check per model at a time, never delaying the request);
- **switch-off**: one difference turns the local tokenizer off for that model until restart (logged
  once; ``inferstack_kv_tokenizer_local{model}`` drops to 0): its requests ask the engine again. So
  does an unexpected error of the local tokenizer (logged with its traceback). A configured model
  whose files do not load starts at 0 and stays there.

``inferstack_kv_tokenizer_checks_total{model, outcome="same|differ|failed"}`` counts the checks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from ..tasks import stop
from .local_tokenizer import LocalTokenizer
from .metrics import TokenizerMetrics
from .settings import LocalTokenizerSettings
from .tokenize import engine_token_ids, prompt_chars, tokenize_body

log = logging.getLogger("inferstack.kvcache")


@dataclass
class _Model:
    tokenizer: LocalTokenizer
    same: int = 0
    off: bool = False
    checking: bool = False


@dataclass(frozen=True)
class LocalIds:
    ids: list[int]
    trusted: bool
    """Past probation: route by these. Otherwise route by the engine's and ``record`` the comparison."""


class TokenizerGuard:
    def __init__(
        self,
        settings: LocalTokenizerSettings,
        session: aiohttp.ClientSession,
        registry: CollectorRegistry,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._session = session
        self._draw = draw
        self._models: dict[str, _Model] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._threads = asyncio.Semaphore(settings.threads)
        self._turn = 0
        self.metrics = TokenizerMetrics(registry)
        for model, directory in settings.dirs.items():
            try:
                tokenizer = LocalTokenizer.load(Path(directory))
            except ValueError as exc:
                log.warning(
                    "local tokenizer not loaded; the engine tokenizes", extra={"model": model, "error": str(exc)}
                )
                # A series at 0, not none: files configured but missing (a deploy whose copy failed)
                # must show, and alert, as a model tokenized by the engine.
                self.metrics.local.labels(model).set(0)
                continue
            self._models[model] = _Model(tokenizer)
            self.metrics.model(model, local=settings.check_first == 0)
            if tokenizer.chat_refusal:
                log.warning(
                    "local tokenizer: chats go to the engine", extra={"model": model, "reason": tokenizer.chat_refusal}
                )

    def models(self) -> list[str]:
        return list(self._models)

    async def ids(self, model: str, payload: Mapping[str, Any], kind: str) -> LocalIds | None:
        """The local ids of this request, or None (no tokenizer, switched off, or not rendered here)."""
        state = self._models.get(model)
        if state is None or state.off:
            return None
        started = time.perf_counter()
        limit = self.settings.thread_chars
        try:
            # A long prompt is rendered and encoded in a worker thread. Rendering too: a chat of 145,000
            # short messages (4 MB) took 0.6 s in the template, which stopped every other request. The
            # thread shares the GIL while it renders, so the loop still gets its turn every few ms.
            if prompt_chars(payload, kind, limit) > limit:
                # At most ``threads`` at once, and a bounded wait for one: the executor's queue has no
                # deadline, and its threads are the loop's default ones (DNS lookups wait there too).
                try:
                    async with asyncio.timeout(self.settings.thread_wait):
                        await self._threads.acquire()
                except TimeoutError:
                    self.metrics.busy.inc()
                    return None  # the engine's /tokenize, within its own timeout
                try:
                    ids = await asyncio.to_thread(state.tokenizer.token_ids, payload, kind)
                finally:
                    self._threads.release()
            else:
                ids = state.tokenizer.token_ids(payload, kind)
            if ids is None:
                return None
        except Exception:  # a template that recurses without end, say: routing must not fail the request
            state.off = True
            self.metrics.local.labels(model).set(0)
            log.exception("local tokenizer failed: off for this model; the engine tokenizes", extra={"model": model})
            return None
        self.metrics.seconds.observe(time.perf_counter() - started)
        return LocalIds(ids, trusted=state.same >= self.settings.check_first)

    def is_off(self, model: str) -> bool:
        """Is the local tokenizer switched off (or absent) for ``model``?"""
        state = self._models.get(model)
        return state is None or state.off

    def record(self, model: str, local: Sequence[int], engine: Sequence[int] | None) -> None:
        """One comparison's outcome: counts, and on a difference turns the local tokenizer off."""
        state = self._models[model]
        if engine is None:
            self.metrics.checks.labels(model, "failed").inc()
            return
        if list(local) == list(engine):
            self.metrics.checks.labels(model, "same").inc()
            state.same += 1
            if state.same == self.settings.check_first and not state.off:
                self.metrics.local.labels(model).set(1)
            return
        self.metrics.checks.labels(model, "differ").inc()
        if not state.off:
            state.off = True
            self.metrics.local.labels(model).set(0)
            at = next(
                (i for i, (a, b) in enumerate(zip(local, engine, strict=False)) if a != b), min(len(local), len(engine))
            )
            log.warning(
                "local tokenizer differs from the engine's /tokenize: off for this model; the engine tokenizes",
                extra={
                    "model": model,
                    "local_tokens": len(local),
                    "engine_tokens": len(engine),
                    "first_difference": at,
                },
            )

    def sample(
        self, model: str, payload: Mapping[str, Any], kind: str, local: list[int], engines: Sequence[str]
    ) -> None:
        """Maybe check these trusted ids against an engine, in the background."""
        state = self._models[model]
        if state.checking or not engines or self._draw() >= self.settings.check_fraction:
            return
        body = tokenize_body(model, payload, kind)
        if body is None:
            return
        self._turn += 1
        state.checking = True
        task = asyncio.create_task(self._check(model, body, local, engines[self._turn % len(engines)]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check(self, model: str, body: dict[str, Any], local: list[int], engine: str) -> None:
        try:
            self.record(model, local, await engine_token_ids(self._session, engine, body, self.settings.check_timeout))
        finally:
            self._models[model].checking = False

    async def close(self) -> None:
        await stop(self._tasks)
