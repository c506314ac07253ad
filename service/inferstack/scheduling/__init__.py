"""Scheduling: choose one replica for a request, as a small framework of plugins.

As in the Gateway API Inference Extension: a *profile* runs *filters* (drop candidates), then
*scorers* (each scores every survivor in 0..1; the profile sums them times their weights), then a
*picker* (chooses one). Profiles are configuration (``config.ProfileSpec``; the built-in ones are
the policies of docs/routing.md):

    prefix_affinity   filters bounded_load   scorers prefix: 1     picker max_score
    session           filters bounded_load   scorers session: 1    picker max_score
    least_load        (no scorer: every candidate ties, the picker takes the least loaded)
    round_robin       picker round_robin
    precise_prefix    filters bounded_load   scorers precise_prefix: 10, load: 1, kv_cache: 1
                      (only with KV events on: the engines' own record of their cached blocks)

The default profile is ``INFERSTACK_ROUTING_POLICY``; a request may choose another with the
``x-inferstack-routing-policy`` header; more profiles come from ``INFERSTACK_ROUTING__PROFILES``
(JSON). Plugins are pure and synchronous: no I/O, no clocks, bounded memory. Every decision counts in
``inferstack_routing_decisions_total{policy,reason}``.

Adding a scorer is one new file, ``scheduling/plugins/<name>.py``::

    class MyScorer:
        name: ClassVar[str] = "my_scorer"          # what profiles call it
        kind: ClassVar[Literal["scorer"]] = "scorer"

        def __init__(self, block_chars: int = 256) -> None:   # keywords = routing knobs it takes
            ...

        def score(self, state: CycleState, candidates: list[EndpointLoad]) -> dict[str, float]:
            return {c.url: ... for c in candidates}          # 0..1 each, higher is better

        # optional: def reason(self, state, url) -> Reason | None   (say why, for the metric)
        # optional: def picked(self, state, url) -> None            (learn from the decision)

    PLUGIN = MyScorer

It is found by name (``framework.plugin_classes``); use it in a profile, for example
``INFERSTACK_ROUTING__PROFILES='{"mine": {"filters": ["bounded_load"], "scorers": {"my_scorer": 2,
"prefix": 1}}}'``. A new knob is a field of ``config.Routing``; a new reason joins ``types.Reason``.
Filters (``kind = "filter"``, ``filter(state, candidates) -> candidates``) and pickers
(``kind = "picker"``, ``pick(state, candidates, scores) -> (candidate, reason)``) are added the
same way. See docs/routing.md.
"""

from .framework import POLICIES, Profile, make_policy, plugin_classes
from .hashing import prefix_chain, rendezvous_order
from .index import PrefixIndex
from .render import render_chat_prompt
from .scheduler import Route, Scheduler
from .types import (
    REASONS,
    CycleState,
    Decision,
    EndpointLoad,
    Filter,
    NoCandidateError,
    Picker,
    Reason,
    RoutingRequest,
    Scorer,
)

__all__ = [
    "POLICIES",
    "REASONS",
    "CycleState",
    "Decision",
    "EndpointLoad",
    "Filter",
    "NoCandidateError",
    "Picker",
    "PrefixIndex",
    "Profile",
    "Reason",
    "Route",
    "RoutingRequest",
    "Scheduler",
    "Scorer",
    "make_policy",
    "plugin_classes",
    "prefix_chain",
    "render_chat_prompt",
    "rendezvous_order",
]
