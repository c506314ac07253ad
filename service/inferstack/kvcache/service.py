"""The KV-event side of routing, as one lifespan-owned object: index, subscribers, metrics, tokenization.

Token ids: a completions prompt of ids as given; none for a prompt over ``max_prompt_chars`` (bounded
work per request: routed as ``no_tokens``); else the gateway's own tokenizer for the models
configured (``tokenizer_guard``: once the engine agreed with it, or on probation when the engine's
``/tokenize`` gave no answer to check it against); else the engine's ``/tokenize``.

kv = KVRouting(settings.kv_events, session, registry)   # in the lifespan, when enabled
discovery updates -> kv.hub.set_urls(urls)              # subscribe on join, unsubscribe on leave
tokens = await kv.token_ids(model, payload, kind, engine_urls)
await kv.close()
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
from prometheus_client import CollectorRegistry, Histogram

from .index import KVIndex
from .metrics import IndexCollector, KVMetrics
from .subscriber import KVEventHub
from .tokenize import direct_token_ids, engine_token_ids, prompt_chars, tokenize_body
from .tokenizer_guard import TokenizerGuard

if TYPE_CHECKING:
    from ..config import KVEvents

TOKENIZE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


class KVRouting:
    def __init__(
        self,
        settings: KVEvents,
        session: aiohttp.ClientSession,
        registry: CollectorRegistry,
        draw: Callable[[], float] = random.random,
    ) -> None:
        """``draw``: uniform in [0, 1), which picks the requests the tokenizer guard checks again."""
        self.settings = settings
        self.index = KVIndex(settings.index_capacity, settings.stale_after)
        self.metrics = KVMetrics(registry)
        registry.register(IndexCollector(self.index))
        self.hub = KVEventHub(
            self.index,
            self.metrics,
            port=settings.port,
            endpoints=settings.endpoints,
            topic=settings.topic,
            max_message_bytes=settings.max_message_bytes,
        )
        self._session = session
        self._turn = 0
        self.tokenize_seconds = Histogram(
            "inferstack_kv_tokenize_seconds",
            "Time to get a request's token ids from an engine's /tokenize (precise_prefix routing).",
            ["outcome"],
            buckets=TOKENIZE_BUCKETS,
            registry=registry,
        )
        for outcome in ("ok", "failed"):
            # Series exist from 0 before the first call: one born at its first sample shows no rate.
            self.tokenize_seconds.labels(outcome)
        self.guard = (
            TokenizerGuard(settings.local_tokenizer, session, registry, draw) if settings.tokenizer == "local" else None
        )

    async def token_ids(
        self, model: str, payload: Mapping[str, Any], kind: str, engines: Sequence[str]
    ) -> list[int] | None:
        direct = direct_token_ids(payload, kind)
        if direct is not None:
            return direct
        limit = self.settings.max_prompt_chars
        if prompt_chars(payload, kind, limit) > limit:
            # Seconds of a core to tokenize here, or an engine's answer of a million ids parsed on the
            # loop, for a prompt no context holds: the engine refuses it; routing needs no ids for that.
            return None
        local = await self.guard.ids(model, payload, kind) if self.guard is not None else None
        if local is not None and local.trusted:
            assert self.guard is not None
            self.guard.sample(model, payload, kind, local.ids, engines)
            return local.ids
        body = tokenize_body(model, payload, kind)
        if body is None or not engines:
            return None
        self._turn += 1
        started = time.perf_counter()
        tokens = await engine_token_ids(
            self._session, engines[self._turn % len(engines)], body, self.settings.tokenize_timeout
        )
        self.tokenize_seconds.labels("ok" if tokens is not None else "failed").observe(time.perf_counter() - started)
        if local is not None and self.guard is not None:
            self.guard.record(model, local.ids, tokens)  # on probation: the engine's answer checks ours
            if tokens is None and not self.guard.is_off(model):
                # The check failed (``/tokenize`` slow or down), it did not find a difference: route by
                # the local ids rather than fall back to the approximate scorer. On the pressure bench
                # every such fallback was a probation check that missed its deadline and cost its
                # turn's whole cached history (docs/routing.md); a drifted tokenizer is caught by the
                # next check that gets an answer.
                return local.ids
        return tokens

    async def close(self) -> None:
        if self.guard is not None:
            await self.guard.close()
        await self.hub.close()
