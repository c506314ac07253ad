"""Replica load as scheduling sees it, and the bound of consistent hashing with bounded loads.

Load is the gateway's in-flight count plus ``waiting_weight`` times the engine's waiting queue when
a fresh scrape has it: in-flight is exact but only counts this gateway's traffic; the queue counts
everyone's, and a queued request costs more than a running one. KV-cache usage without a fresh
scrape counts as half full (``kv_usage``).

Bounded loads (Mirrokni, Thorup, Zadimoghaddam 2016): with the new request counted, no replica may
exceed ``ceil(c * mean)``. A replica at the cap is skipped and the request goes to the next in its
preference order, so affinity holds until it would overload a replica, and max/mean stays <= ~c.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .types import EndpointLoad, NoCandidateError

UNKNOWN_KV_USAGE = 0.5
"""What a replica's KV-cache usage counts as while unknown (no fresh scrape): half full, everywhere it is
read (the ``kv_cache`` scorer, ``max_score``'s tie-break). Counted empty, a replica whose scrapes fail
(often the overloaded one) would win every tie; counted full, one slow scrape would starve it."""


def kv_usage(e: EndpointLoad) -> float:
    return UNKNOWN_KV_USAGE if e.kv_cache_usage is None else e.kv_cache_usage


def load_of(e: EndpointLoad, waiting_weight: float) -> float:
    return e.in_flight + (waiting_weight * e.waiting if e.waiting is not None else 0.0)


def load_cap(loads: Sequence[float], factor: float) -> float:
    """The most load a replica may hold *after* taking the new request."""
    return math.ceil(factor * (sum(loads) + 1) / len(loads))


def usable(candidates: Sequence[EndpointLoad], exclude: frozenset[str]) -> list[EndpointLoad]:
    out = [c for c in candidates if c.url not in exclude]
    if not out:
        raise NoCandidateError("no candidate replica left")
    return out
