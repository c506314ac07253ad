"""The real-engine routing bench's workload and traffic plan, drawn from one seed before any policy runs.

Every policy replays byte-identical requests along identical paths: the same conversations (the
assistant turns are fixed text, not the engine's output), the same gateway replica for each routed
turn and the same engine for each direct one. Only the interleaving of concurrent conversations
depends on timing.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Any

WORDS = (
    "river",
    "stone",
    "ledger",
    "harbour",
    "winter",
    "signal",
    "garden",
    "copper",
    "meadow",
    "lantern",
    "orbit",
    "candle",
    "forest",
    "thunder",
    "mirror",
    "parcel",
    "silver",
    "window",
    "anchor",
    "violet",
)

Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class Shape:
    tenants: int
    conversations: int
    """Per tenant."""
    turns: int
    system_words: int
    user_words: int
    answer_words: int


def conversations(shape: Shape, seed: int) -> list[list[Messages]]:
    """Each conversation as the list of its turns; a turn is the whole messages list sent."""
    rng = random.Random(seed)

    def words(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    systems = [f"Tenant {t} policy. " + words(shape.system_words) for t in range(shape.tenants)]
    convs = []
    for t in range(shape.tenants):
        for c in range(shape.conversations):
            messages: Messages = [{"role": "system", "content": systems[t]}]
            conv = []
            for turn in range(shape.turns):
                messages = [
                    *messages,
                    {"role": "user", "content": f"Conversation {c} question {turn}: " + words(shape.user_words)},
                ]
                conv.append(list(messages))
                messages = [*messages, {"role": "assistant", "content": words(shape.answer_words)}]
            convs.append(conv)
    return convs


@dataclass(frozen=True)
class Route:
    """Where one turn goes: through gateway replica ``gateway`` (as a Kubernetes Service spreads
    clients over gateway pods), or, when ``gateway`` is None, straight to engine ``engine`` (a client
    inside the cluster calling the engine Service: kube-proxy picks a replica at random)."""

    gateway: int | None
    engine: int | None


def routes(
    convs: list[list[Messages]], gateways: int, engines: int, direct_share: float, seed: int
) -> dict[tuple[int, int], Route]:
    rng = random.Random(seed * 7919 + 1)
    plan = {}
    for c, conv in enumerate(convs):
        for t in range(len(conv)):
            if rng.random() < direct_share:
                plan[(c, t)] = Route(None, rng.randrange(engines))
            else:
                plan[(c, t)] = Route(rng.randrange(gateways), None)
    return plan


def order(n: int, seed: int) -> list[int]:
    """The order in which workers take up conversations (each worker keeps one until its last turn)."""
    queue = list(range(n))
    random.Random(seed).shuffle(queue)
    return queue


class TurnQueue:
    """The closed loop's turns ready to send, oldest first, with ``live`` conversations under way.

    A worker ``take``s the front turn and, once it is answered, reports it (``answered``): the
    conversation's next turn joins the back, or after its last turn the next conversation in
    ``order`` starts. With ``live`` at most the number of workers that is one conversation per worker,
    its turns back to back; above it each turn waits behind the other live conversations' turns, as a
    user reads and types. A conversation never has two turns out at once.
    """

    def __init__(self, turns: list[int], order: list[int], live: int) -> None:
        """``turns``: per conversation; ``order``: conversations, taken up from the end (``order()``'s)."""
        self._turns = turns
        self._waiting = list(order)
        self._ready = deque((self._waiting.pop(), 0) for _ in range(min(live, len(self._waiting))))

    def take(self) -> tuple[int, int] | None:
        """The front (conversation, turn); None when none is ready (the rest are in flight, or done)."""
        return self._ready.popleft() if self._ready else None

    def answered(self, c: int, t: int) -> None:
        if t + 1 < self._turns[c]:
            self._ready.append((c, t + 1))
        elif self._waiting:
            self._ready.append((self._waiting.pop(), 0))
