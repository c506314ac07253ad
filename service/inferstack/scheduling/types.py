"""What scheduling sees and returns, and the three kinds of plugin. Pure values: no I/O, no clocks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol, runtime_checkable

Reason = Literal[
    "prefix_hit",
    "prefix_miss",
    "load_bound",
    "least_load",
    "max_score",
    "round_robin",
    "session",
    "only_candidate",
    "no_tokens",
    "no_events",
    "loaded",
    "free_slot",
    "least_loaded",
    "capped",
    "unknown_state",
]
ADAPTER_REASONS: tuple[Reason, ...] = ("loaded", "free_slot", "least_loaded", "capped", "unknown_state")
REASONS: tuple[Reason, ...] = (
    "prefix_hit",
    "prefix_miss",
    "load_bound",
    "least_load",
    "max_score",
    "round_robin",
    "session",
    "only_candidate",
    "no_tokens",
    "no_events",
    *ADAPTER_REASONS,
)


# The values built per decision are frozen with slots: a frozen dataclass's __init__ sets each field
# through object.__setattr__, at about twice the cost with an instance dict as with slots.
@dataclass(frozen=True, slots=True)
class EndpointLoad:
    """One replica as seen at decision time."""

    url: str
    in_flight: int
    """The gateway's own count of open requests to it: authoritative and instant."""
    waiting: float | None = None
    """``vllm:num_requests_waiting`` from a fresh scrape; None when stale or unknown."""
    kv_cache_usage: float | None = None


@dataclass(frozen=True, slots=True)
class RoutingRequest:
    model: str
    prompt: str
    """Rendered prompt text; chat messages rendered from the start (``render_chat_prompt``). Only its first
    ``Profile.prompt_chars`` characters (empty when no scorer reads it): rendering costs more than routing."""
    session_key: str | None = None
    """``x-session-id`` header, else the request's ``user`` field."""
    token_ids: tuple[int, ...] | None = None
    """The prompt's token ids as the engine will see them (``precise_prefix`` only; None: unknown)."""
    cache_salt: str | None = None
    """The request's ``cache_salt``: vLLM mixes it into the first block's hash."""


@dataclass(frozen=True, slots=True)
class Decision:
    url: str
    reason: Reason
    prefix_blocks: int = 0
    """Leading prompt blocks the chosen replica was believed to hold (for the log line)."""
    adapter_reason: Reason | None = None
    """For a LoRA adapter request under a profile with the ``adapter`` scorer: why this replica."""


class NoCandidateError(LookupError):
    """Every candidate was excluded (or there were none): the caller holds or fails the request."""


@dataclass(slots=True)
class CycleState:
    """One decision's scratch space: what earlier plugins learned, for later ones to read."""

    request: RoutingRequest
    candidates: Sequence[EndpointLoad]
    """Every candidate (after the caller's exclusions), before any filter ran."""
    loads: dict[str, float]
    """Each candidate's load: in-flight plus ``waiting_weight`` x the engine's waiting queue."""
    fallback: bool = False
    """A filter kept candidates it would have dropped, for want of any other (reason ``load_bound``)."""
    prefix_blocks: int = 0
    adapter_reason: Reason | None = None
    notes: dict[str, object] = field(default_factory=dict)
    """Per-plugin values for its own later calls in the same decision, keyed by plugin name."""


class Filter(Protocol):
    """Drops candidates; must return at least one of them (the framework never sees an empty list)."""

    name: ClassVar[str]
    kind: ClassVar[Literal["filter"]]

    def filter(self, state: CycleState, candidates: list[EndpointLoad]) -> list[EndpointLoad]: ...


class Scorer(Protocol):
    """Scores every candidate in 0..1 (higher is better); the profile weighs and sums the scores."""

    name: ClassVar[str]
    kind: ClassVar[Literal["scorer"]]

    def score(self, state: CycleState, candidates: list[EndpointLoad]) -> dict[str, float]: ...


class Picker(Protocol):
    """Chooses one of the filtered candidates from their summed scores, and says why."""

    name: ClassVar[str]
    kind: ClassVar[Literal["picker"]]

    def pick(
        self, state: CycleState, candidates: list[EndpointLoad], scores: dict[str, float]
    ) -> tuple[EndpointLoad, Reason]: ...


@runtime_checkable
class Explains(Protocol):
    """Optional, for a scorer: the reason of a decision it drove (None: it had no say)."""

    def reason(self, state: CycleState, url: str) -> Reason | None: ...


@runtime_checkable
class Learns(Protocol):
    """Optional, for any plugin: told the chosen replica (``only_candidate`` included), to learn from it."""

    def picked(self, state: CycleState, url: str) -> None: ...
