"""Choosing a replica for a request: the bridge between the request path and the profiles.

Each request gets one profile: the override header's, else the adapter policy for a LoRA adapter, else
the routing policy (the inference extension's profile handler, reduced to the one choice a fleet needs).

The profiles are pure functions of a snapshot; the scheduler renders the prompt they hash (only for a
profile with a scorer that reads it: most do not, and rendering is the costliest step here), honours
the per-request override header (or refuses it, as the router says), builds the snapshot from
the endpoints it is given (in-flight counts, and scraped engine load only while it is fresh) and
counts every decision.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import InvalidRequestError, PermissionDeniedError
from ..metrics.gateway import GatewayMetrics
from ..upstream.adapters import AdapterPlacement
from ..upstream.endpoint import Endpoint
from .framework import Profile, make_policy
from .plugins.adapter import Adapter
from .plugins.precise_prefix import PrecisePrefix
from .render import render_chat_prompt
from .types import EndpointLoad, RoutingRequest

if TYPE_CHECKING:
    from ..kvcache.service import KVRouting

OVERRIDE_HEADER = "x-inferstack-routing-policy"
SESSION_HEADER = "x-session-id"


@dataclass
class Route:
    """What routing decided for one request, for its log line."""

    policy: str
    request: RoutingRequest
    reason: str | None = None
    prefix_blocks: int = 0
    """Leading prompt blocks the chosen replica was believed to hold (prefix profiles)."""


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        metrics: GatewayMetrics,
        kv: KVRouting | None = None,
        placement: AdapterPlacement | None = None,
    ) -> None:
        knobs = settings.routing.plugin_settings()
        profiles = settings.routing.all_profiles()
        if kv is None:  # without KV events there is nothing precise about it
            profiles.pop("precise_prefix", None)
        self._profiles: dict[str, Profile] = {name: make_policy(name, profiles, **knobs) for name in profiles}
        self._kv = kv
        if kv is not None:
            for profile in self._profiles.values():
                for scorer, _ in profile.scorers:
                    if isinstance(scorer, PrecisePrefix):
                        scorer.attach(kv.index, hash_seed=kv.settings.hash_seed, max_blocks=kv.settings.max_blocks)
        if placement is not None:
            for profile in self._profiles.values():
                for scorer, _ in profile.scorers:
                    if isinstance(scorer, Adapter):
                        scorer.attach(placement)
        self._default = settings.routing_policy
        # Adapter requests get their own profile only where the gateway can tell an adapter from a model
        # (a placement): ``_policy_for`` checks both.
        self._adapter_policy = settings.routing.adapter_policy
        self._placement = placement
        self._max_age = settings.routing.load_max_age
        self._metrics = metrics

    def route(
        self,
        model: str,
        payload: Mapping[str, Any],
        kind: str,
        headers: Mapping[str, str],
        *,
        may_override: bool = True,
    ) -> Route:
        """The request's profile and what it routes on. ``may_override``: the caller may choose the profile
        with the override header (the router's answer: ``routing.allow_override`` or the key's grant)."""
        name = headers.get(OVERRIDE_HEADER)
        if not name:
            name = self._policy_for(model)
        elif not may_override:
            raise PermissionDeniedError(
                f"{OVERRIDE_HEADER} is not allowed on this gateway: remove the header (the operator chose the routing)",
                code="routing_override_disabled",
            )
        if name not in self._profiles:
            raise InvalidRequestError(
                f"Unknown routing policy {name!r} in {OVERRIDE_HEADER}; choose one of {', '.join(self._profiles)}."
            )
        session = headers.get(SESSION_HEADER) or payload.get("user")
        chars = self._profiles[name].prompt_chars
        prompt = prompt_of(payload, kind, chars) if chars else ""
        request = RoutingRequest(model, prompt, str(session) if session else None)
        return Route(name, request)

    def _policy_for(self, model: str) -> str:
        """The default profile for ``model``: the adapter profile for a LoRA adapter, else the routing policy."""
        if self._adapter_policy and self._placement is not None and self._placement.base_of(model) is not None:
            return self._adapter_policy
        return self._default

    def wants_tokens(self, route: Route) -> bool:
        """Does the route's profile read the prompt's token ids (``precise_prefix``)? The router gets them."""
        return self._kv is not None and self._profiles[route.policy].reads_tokens

    @staticmethod
    def give_tokens(route: Route, tokens: Sequence[int] | None, payload: Mapping[str, Any]) -> None:
        if tokens is not None:
            salt = payload.get("cache_salt")
            route.request = replace(
                route.request, token_ids=tuple(tokens), cache_salt=salt if isinstance(salt, str) else None
            )

    def pick(self, route: Route, candidates: Sequence[Endpoint]) -> Endpoint:
        """One of ``candidates`` (non-empty: replicas with room) for ``route``; the decision is counted."""
        now = time.monotonic()
        by_url = {e.url: e for e in candidates}
        snapshot = []
        for e in candidates:
            load = e.fresh_load(now, self._max_age)
            snapshot.append(
                EndpointLoad(
                    e.url,
                    e.in_flight,
                    waiting=None if load is None else load.waiting,
                    kv_cache_usage=None if load is None else load.kv_cache_usage,
                )
            )
        decision = self._profiles[route.policy].pick(route.request, snapshot)
        route.reason, route.prefix_blocks = decision.reason, decision.prefix_blocks
        self._metrics.tally(self._metrics.routing_decisions, route.policy, decision.reason).inc()
        if decision.adapter_reason is not None:
            self._metrics.tally(self._metrics.adapter_decisions, route.request.model, decision.adapter_reason).inc()
        return by_url[decision.url]


def prompt_of(payload: Mapping[str, Any], kind: str, limit: int | None = None) -> str:
    """The text whose leading blocks identify the engine's cached prefix (its first ``limit`` characters)."""
    if kind == "chat":
        messages = payload.get("messages")
        return render_chat_prompt(messages, limit) if isinstance(messages, list) else ""
    value = payload.get("prompt" if kind == "completions" else "input")
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        first = value[0]
        # A batch of prompts: route by the first; token-id prompts hash as their numbers.
        return first if isinstance(first, str) else str(value if isinstance(first, int) else first)
    return ""
