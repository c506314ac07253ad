"""Synthetic prompt text and multi-turn conversations; no data set is downloaded.

Text is drawn from a fixed vocabulary of common English words, so a prompt of ``n`` words is
roughly ``n`` tokens for a BPE tokenizer (the exact count comes back in ``usage.prompt_tokens``
and is what the reports show). System prompts come from a fixed seed: every user, in every locust
process, shares the same few long prefixes, the way a product's users share its system prompt,
which is what exercises the engines' prefix cache and the gateway's prefix-affinity routing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

_COMMON_WORDS = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one had by "
    "word but not what all were we when your can said there use an each which she do how their if will up "
    "other about out many then them these so some her would make like him into time has look two more write "
    "go see number no way could people my than first water been call who oil its now find long down day did "
    "get come made may part over new sound take only little work know place year live me back give most very "
    "after thing our just name good sentence man think say great where help through much before line right too "
    "mean old any same tell boy follow came want show also around form three small set put end does another "
    "well large must big even such because turn here why ask went men read need land different home us move "
    "try kind hand picture again change off play spell air away animal house point page letter mother answer "
    "found study still learn should world high every near add food between own below country plant last school"
)
VOCABULARY = tuple(_COMMON_WORDS.split())

SYSTEM_PROMPT_SEED = 20240229


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choices(VOCABULARY, k=count))


def system_prompts(count: int, length: int) -> tuple[str, ...]:
    """The shared prefixes: identical in every process because the seed is fixed."""
    rng = random.Random(SYSTEM_PROMPT_SEED)
    return tuple(f"You are assistant number {i}. " + words(rng, length) for i in range(count))


Message = dict[str, str]


@dataclass
class Conversation:
    """One user's chat: a shared system prompt, then user/assistant turns that grow the context.

    When the history exceeds ``max_context_words`` the oldest turns are dropped (the system prompt
    stays), as chat front-ends do to stay inside the model's context.
    """

    system: str
    turns_left: int
    max_context_words: int
    messages: list[Message] = field(default_factory=list)

    def ask(self, question: str) -> list[Message]:
        self.messages.append({"role": "user", "content": question})
        self._trim()
        self.turns_left -= 1
        return [{"role": "system", "content": self.system}, *self.messages]

    def answer(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})

    @property
    def finished(self) -> bool:
        return self.turns_left <= 0

    def _trim(self) -> None:
        budget = self.max_context_words - _count(self.system)
        while len(self.messages) > 1 and sum(_count(m["content"]) for m in self.messages) > budget:
            del self.messages[:2]  # the oldest question and its answer


def _count(text: str) -> int:
    return len(text.split())
