"""What a routing policy sees and returns. Pure values: policies do no I/O and keep no clocks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Reason = Literal[
    "prefix_hit",
    "prefix_miss",
    "load_bound",
    "least_load",
    "round_robin",
    "session",
    "only_candidate",
]
REASONS: tuple[Reason, ...] = (
    "prefix_hit",
    "prefix_miss",
    "load_bound",
    "least_load",
    "round_robin",
    "session",
    "only_candidate",
)


@dataclass(frozen=True)
class EndpointLoad:
    """One replica as seen at decision time."""

    url: str
    in_flight: int
    """The gateway's own count of open requests to it: authoritative and instant."""
    waiting: float | None = None
    """``vllm:num_requests_waiting`` from a fresh scrape; None when stale or unknown."""
    running: float | None = None
    kv_cache_usage: float | None = None


@dataclass(frozen=True)
class RoutingRequest:
    model: str
    prompt: str
    """Rendered prompt text; chat messages rendered from the start (``render_chat_prompt``)."""
    session_key: str | None = None
    """``x-session-id`` header, else the request's ``user`` field."""


@dataclass(frozen=True)
class Decision:
    url: str
    reason: Reason
    prefix_blocks: int = 0
    """Leading prompt blocks the chosen replica was believed to hold (for the log line)."""


class NoCandidateError(LookupError):
    """Every candidate was excluded (or there were none): the caller holds or fails the request."""


class Policy(Protocol):
    name: str

    def pick(
        self,
        req: RoutingRequest,
        candidates: Sequence[EndpointLoad],
        exclude: frozenset[str] = frozenset(),
    ) -> Decision: ...

    def on_finished(self, req: RoutingRequest, url: str) -> None: ...
