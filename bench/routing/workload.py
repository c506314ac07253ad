"""The shared-prefix workload: tenants with long system prompts, multi-turn conversations.

Everything is drawn up front from one seed, so every policy replays exactly the same conversations
(the same texts, turn counts and output lengths); only the timing of later turns depends on how
fast the fleet answers (a user reads the answer, then thinks, then asks again).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field

from inferstack_fake_engine.text import CHARS_PER_TOKEN


@dataclass(frozen=True)
class WorkloadShape:
    tenants: int = 64
    system_tokens: tuple[int, int] = (2000, 6000)
    turns: tuple[int, int] = (2, 6)
    user_tokens: tuple[int, int] = (50, 300)
    output_tokens: tuple[int, int] = (100, 300)
    think_time_mean: float = 5.0
    """Seconds between an answer's last token and the next question (exponential)."""
    conversations_per_tenant: int = 0
    """0: each conversation's tenant is drawn at random. n: as ``bench/routing_real``'s plan, every
    tenant n times in a shuffled order (shuffled again when used up), so a tenant's conversations
    are as far apart as the plan puts them."""


@dataclass
class Conversation:
    cid: int
    tenant: int
    questions: list[str]
    outputs: list[int]
    think_times: list[float]
    answered: list[int] = field(default_factory=list)
    """Output tokens of the turns answered so far (the answers enter the next turn's history)."""


def _text(rng: random.Random, tokens: int) -> str:
    # Random lowercase words: no accidental shared prefixes between tenants or questions.
    letters = string.ascii_lowercase
    chars = tokens * CHARS_PER_TOKEN
    words = []
    size = 0
    while size < chars:
        w = "".join(rng.choices(letters, k=rng.randint(2, 9))) + " "
        words.append(w)
        size += len(w)
    return "".join(words)[:chars]


class Workload:
    def __init__(self, shape: WorkloadShape, seed: int) -> None:
        self.shape = shape
        self._rng = random.Random(seed)
        self.system_prompts = [_text(self._rng, self._rng.randint(*shape.system_tokens)) for _ in range(shape.tenants)]
        self._next_id = 0
        self._tenants: list[int] = []

    def _tenant(self) -> int:
        s, rng = self.shape, self._rng
        if not s.conversations_per_tenant:
            return rng.randrange(s.tenants)
        if not self._tenants:
            self._tenants = [t for t in range(s.tenants) for _ in range(s.conversations_per_tenant)]
            rng.shuffle(self._tenants)
        return self._tenants.pop()

    def conversation(self) -> Conversation:
        s, rng = self.shape, self._rng
        turns = rng.randint(*s.turns)
        self._next_id += 1
        return Conversation(
            cid=self._next_id,
            tenant=self._tenant(),
            questions=[_text(rng, rng.randint(*s.user_tokens)) for _ in range(turns)],
            outputs=[rng.randint(*s.output_tokens) for _ in range(turns)],
            think_times=[rng.expovariate(1 / s.think_time_mean) for _ in range(turns)],
        )

    def mean_turn_tokens(self, samples: int = 2000) -> tuple[float, float, float]:
        """Mean (prompt tokens, output tokens, turns) per turn, estimated on a separate generator."""
        probe = Workload.__new__(Workload)
        probe.shape, probe.system_prompts, probe._next_id, probe._tenants = self.shape, self.system_prompts, 0, []
        probe._rng = random.Random(12345)
        prompt = output = turns = 0.0
        n = 0
        for _ in range(samples // 4):
            c = probe.conversation()
            history = len(self.system_prompts[c.tenant]) / CHARS_PER_TOKEN
            turns += len(c.questions)
            for q, o in zip(c.questions, c.outputs, strict=True):
                history += len(q) / CHARS_PER_TOKEN
                prompt += history
                output += o
                history += o
                n += 1
        return prompt / n, output / n, turns / (samples // 4)
