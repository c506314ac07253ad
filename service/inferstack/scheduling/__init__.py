"""Routing policies: choose one replica for a request from a snapshot of the healthy candidates.

Pure and synchronous: no I/O, no clocks, bounded memory. The gateway passes each decision's reason
to ``inferstack_routing_decisions_total{policy,reason}`` and the chosen URL to its log line.
See docs/routing.md.
"""

from .factory import POLICIES, make_policy
from .hashing import prefix_chain, rendezvous_order
from .index import PrefixIndex
from .least_load import LeastLoad
from .prefix_affinity import PrefixAffinity
from .render import render_chat_prompt
from .round_robin import RoundRobin
from .session import Session
from .types import REASONS, Decision, EndpointLoad, NoCandidateError, Policy, Reason, RoutingRequest

__all__ = [
    "POLICIES",
    "REASONS",
    "Decision",
    "EndpointLoad",
    "LeastLoad",
    "NoCandidateError",
    "Policy",
    "PrefixAffinity",
    "PrefixIndex",
    "Reason",
    "RoundRobin",
    "RoutingRequest",
    "Session",
    "make_policy",
    "prefix_chain",
    "render_chat_prompt",
    "rendezvous_order",
]
