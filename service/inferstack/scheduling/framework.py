"""Profiles: filters, then weighted scorers, then a picker, built from plugins by name.

A decision, as in the Gateway API Inference Extension's scheduler: the candidates (healthy replicas
with room, minus the caller's exclusions) pass each filter in order; each scorer scores the
survivors in 0..1 and the profile sums the scores times their weights; the picker chooses one.
The reason (``inferstack_routing_decisions_total{policy,reason}``) is ``only_candidate`` when there
was no choice, ``load_bound`` when a filter had to fall back, else the first scorer's that explains
itself, else the picker's. Plugins that learn from decisions are told the chosen replica.

Plugins are found by name in ``scheduling/plugins/`` (each module's ``PLUGIN``); their constructor
keywords are the routing knobs they take (``Settings.routing``). Profiles are configuration
(``config.ProfileSpec``).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from ..config import BUILTIN_PROFILES, ProfileSpec
from . import plugins
from .load import load_of, usable
from .types import CycleState, Decision, EndpointLoad, Explains, Filter, Learns, Picker, RoutingRequest, Scorer

POLICIES: tuple[str, ...] = tuple(BUILTIN_PROFILES)
PROFILE_SETTINGS = ("waiting_weight",)
"""Knobs of the profile itself (the load every plugin sees), beside the plugins' own."""


@cache
def plugin_classes() -> dict[str, type[Any]]:
    """Every plugin class by name: each module of ``scheduling/plugins`` names its class in ``PLUGIN``."""
    found: dict[str, type[Any]] = {}
    for info in pkgutil.iter_modules(plugins.__path__):
        module = importlib.import_module(f"{plugins.__name__}.{info.name}")
        cls = getattr(module, "PLUGIN", None)
        if cls is not None:
            found[cls.name] = cls
    return found


def setting_names() -> frozenset[str]:
    names = set(PROFILE_SETTINGS)
    for cls in plugin_classes().values():
        names.update(p for p in inspect.signature(cls).parameters if p != "self")
    return frozenset(names)


class Profile:
    """One configured way of choosing: ``pick(request, candidates)`` -> ``Decision``."""

    def __init__(
        self,
        name: str,
        filters: Sequence[Filter],
        scorers: Sequence[tuple[Scorer, float]],
        picker: Picker,
        waiting_weight: float = 1.0,
    ) -> None:
        self.name = name
        self.filters = tuple(filters)
        self.scorers = tuple(scorers)
        self.picker = picker
        self.waiting_weight = waiting_weight
        everything: list[object] = [*self.filters, *(s for s, _ in self.scorers), picker]
        self._explainers = tuple(s for s, _ in self.scorers if isinstance(s, Explains))
        self._learners = tuple(p for p in everything if isinstance(p, Learns))
        self.reads_tokens = any(getattr(s, "reads_tokens", False) for s, _ in self.scorers)
        """A scorer needs the prompt's token ids (``RoutingRequest.token_ids``): the scheduler gets them."""
        self.prompt_chars: int = max((getattr(s, "prompt_chars", 0) for s, _ in self.scorers), default=0)
        """Leading characters of the rendered prompt (``RoutingRequest.prompt``) a scorer hashes; 0: none
        does, and the scheduler renders nothing."""

    def plugin(self, name: str) -> object:
        """The plugin called ``name`` in this profile (tests and benchmarks inspect their state)."""
        plugins: tuple[Filter | Scorer | Picker, ...] = (*self.filters, *(s for s, _ in self.scorers), self.picker)
        for p in plugins:
            if p.name == name:
                return p
        raise KeyError(name)

    def pick(
        self, req: RoutingRequest, candidates: Sequence[EndpointLoad], exclude: frozenset[str] = frozenset()
    ) -> Decision:
        everyone = usable(candidates, exclude)
        w = self.waiting_weight
        state = CycleState(req, everyone, {c.url: load_of(c, w) for c in everyone})
        if len(everyone) == 1:
            return self._decided(state, everyone[0].url, "only_candidate")
        kept = everyone
        for f in self.filters:
            kept = f.filter(state, kept)
        totals = dict.fromkeys((c.url for c in kept), 0.0)
        for scorer, weight in self.scorers:
            for url, score in scorer.score(state, kept).items():
                totals[url] += weight * score
        chosen, reason = self.picker.pick(state, kept, totals)
        url = chosen.url
        if state.fallback:
            reason = "load_bound"
        else:
            for explainer in self._explainers:
                said = explainer.reason(state, url)
                if said is not None:
                    reason = said
                    break
        return self._decided(state, url, reason)

    def _decided(self, state: CycleState, url: str, reason: Any) -> Decision:
        for learner in self._learners:
            learner.picked(state, url)
        return Decision(url, reason, state.prefix_blocks, state.adapter_reason)


def make_policy(name: str, profiles: Mapping[str, ProfileSpec] | None = None, **settings: Any) -> Profile:
    """The profile ``name`` (built-in, or from ``profiles``), its plugins built with ``settings``.

    Every knob of every plugin is accepted and each plugin takes what applies to it, so one settings
    object builds every profile. An unknown knob is an error: a typo must not fall back to a default.
    """
    specs = {**BUILTIN_PROFILES, **(profiles or {})}
    spec = specs.get(name)
    if spec is None:
        raise ValueError(f"unknown routing policy {name!r}; choose one of {', '.join(specs)}")
    unknown = set(settings) - setting_names()
    if unknown:
        raise ValueError(f"unknown routing settings: {', '.join(sorted(unknown))}")
    classes = plugin_classes()

    def build(plugin: str, kind: str) -> Any:
        cls = classes.get(plugin)
        if cls is None or cls.kind != kind:
            raise ValueError(f"profile {name!r}: no {kind} plugin called {plugin!r}")
        takes = inspect.signature(cls).parameters
        return cls(**{k: v for k, v in settings.items() if k in takes})

    return Profile(
        name,
        [build(f, "filter") for f in spec.filters],
        [(build(s, "scorer"), weight) for s, weight in spec.scorers.items()],
        build(spec.picker, "picker"),
        waiting_weight=settings.get("waiting_weight", 1.0),
    )
