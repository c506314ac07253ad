"""The locust users (one class per scenario) and the load shape.

Imported only by ``locustfile.py`` (with ``hooks.py``): importing locust monkey-patches the
standard library with gevent, which must not happen inside pytest or ``run.py``.

Each streamed request reports to locust as several request types, so they show in the web UI,
the console and the CSVs like any request (the name column is the scenario):

| type     | "response time" column                | one per            |
|----------|---------------------------------------|--------------------|
| `E2E`    | end-to-end time (ms); failures by kind | request            |
| `TTFT`   | time to first token (ms)              | request with a token |
| `ITL`    | one gap between tokens (ms)           | gap                |
| `TOK/S`  | that request's output tokens/s (not ms) | successful request |
| `TOKENS` | 0; its requests/s is the aggregate output tokens/s | output token |
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from locust import LoadTestShape, User, task

from .client import Exchange, stream_chat
from .profile import Profile, Scenario
from .prompts import Conversation, words
from .samples import RequestSample, SampleWriter
from .shapes import Shape
from .timing import StreamTiming, tokens_per_second

# -- per-process run context, built by the init hook -----------------------------------------------


@dataclass
class RunContext:
    profile: Profile
    api_keys: list[str]
    report_dir: Path
    writer: SampleWriter | None
    slo_path: Path
    models: dict[str, int] = field(default_factory=dict)
    prompts: tuple[str, ...] = ()
    user_numbers: Iterator[int] = field(default_factory=itertools.count)

    def pick_model(self, session: requests.Session, host: str, rng: random.Random) -> str:
        if not self.models:
            # Profile names no models: load every model the endpoint serves, equally.
            response = session.get(
                f"{host}/v1/models",
                headers=_auth(self.api_keys[0] if self.api_keys else None),
                timeout=self.profile.timeouts.connect,
            )
            response.raise_for_status()
            self.models = {m["id"]: 1 for m in response.json()["data"]}
        return rng.choices(list(self.models), weights=list(self.models.values()))[0]


def _auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


# -- users -----------------------------------------------------------------------------------------


class LLMUser(User):
    abstract = True
    kind = ""
    run_context: RunContext | None = None  # set by the init hook, like locust's own class attributes

    def on_start(self) -> None:
        assert self.run_context is not None, "llmload init hook did not run"
        self.ctx = self.run_context
        self.scenario: Scenario = self.ctx.profile.scenario(self.kind)  # type: ignore[assignment]
        self.session = requests.Session()
        assert self.host, "no host: pass --host"
        self.base_url = self.host.rstrip("/")
        number = next(self.ctx.user_numbers)
        self.rng = random.Random(f"{os.getpid()}-{number}")
        # Each user is one client of the service: it keeps one API key (one tenant) for its life.
        self.key_index = number % len(self.ctx.api_keys) if self.ctx.api_keys else -1

    def on_stop(self) -> None:
        self.session.close()

    def wait_time(self) -> float:
        low, high = self.scenario.think_time
        return self.rng.uniform(low, high)

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> StreamTiming | None:
        """One streamed chat completion, reported to locust; its timing when it succeeded."""
        ctx = self.ctx
        key = ctx.api_keys[self.key_index] if self.key_index >= 0 else None
        body: dict[str, Any] = {
            "model": ctx.pick_model(self.session, self.base_url, self.rng),
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if ctx.profile.ignore_eos:
            body["ignore_eos"] = True  # vLLM: generate exactly max_tokens, so lengths follow the profile
        started_at, users = time.time(), self.environment.runner.user_count if self.environment.runner else 0
        exchange = stream_chat(
            self.session, f"{self.base_url}/v1/chat/completions", body, _auth(key), ctx.profile.timeouts
        )
        self._report(exchange)
        if ctx.writer is not None:
            ctx.writer.add(
                _sample(exchange, started_at, self.kind, body["model"], self.key_index, users), exchange.timing.gaps
            )
        return exchange.timing if exchange.failure is None else None

    def _report(self, exchange: Exchange) -> None:
        timing, e2e, failure = exchange.timing, exchange.e2e, exchange.failure
        fire = self.environment.events.request.fire
        name = self.kind
        # TTFT and gaps count even when the stream fails later: the gateway's histograms count them too.
        if timing.ttft is not None:
            fire(
                request_type="TTFT",
                name=name,
                response_time=timing.ttft * 1000,
                response_length=0,
                exception=None,
                context={},
            )
        for gap in timing.gaps:
            fire(request_type="ITL", name=name, response_time=gap * 1000, response_length=0, exception=None, context={})
        tokens = timing.output_tokens
        fire(
            request_type="E2E",
            name=name,
            response_time=e2e * 1000,
            response_length=tokens,
            exception=failure,
            context={},
        )
        if failure is None:
            fire(
                request_type="TOK/S",
                name=name,
                response_time=tokens_per_second(tokens, e2e),
                response_length=0,
                exception=None,
                context={},
            )
        for _ in range(tokens):
            fire(request_type="TOKENS", name=name, response_time=0, response_length=1, exception=None, context={})


def _sample(exchange: Exchange, started_at: float, scenario: str, model: str, key: int, users: int) -> RequestSample:
    timing, gaps = exchange.timing, exchange.timing.gaps
    return RequestSample(
        started_at=started_at,
        scenario=scenario,
        model=model,
        key=key,
        users=users,
        outcome="ok" if exchange.failure is None else exchange.failure.kind,
        ttft_s=timing.ttft,
        e2e_s=exchange.e2e,
        prompt_tokens=timing.prompt_tokens,
        output_tokens=timing.output_tokens,
        itl_mean_s=sum(gaps) / len(gaps) if gaps else None,
        itl_max_s=max(gaps) if gaps else None,
    )


class ChatUser(LLMUser):
    """Single-turn chat: a prompt and a streamed answer."""

    kind = "chat"

    @task
    def ask(self) -> None:
        prompt = words(self.rng, self.scenario.prompt_words.sample(self.rng))
        self.stream([{"role": "user", "content": prompt}], self.scenario.output_tokens.sample(self.rng))


class LongContextUser(ChatUser):
    """A long document and a question about it: prefill-heavy requests."""

    kind = "long_context"

    @task
    def ask(self) -> None:
        document = words(self.rng, self.scenario.prompt_words.sample(self.rng))
        prompt = f"Read the document and answer the question.\n\n{document}\n\nQuestion: what is it about?"
        self.stream([{"role": "user", "content": prompt}], self.scenario.output_tokens.sample(self.rng))


class ConversationUser(LLMUser):
    """Multi-turn chat over one of a few shared system prompts; each turn resends the history."""

    kind = "conversation"
    conversation: Conversation | None = None

    @task
    def turn(self) -> None:
        scenario = self.scenario
        if self.conversation is None or self.conversation.finished:
            assert scenario.turns is not None
            self.conversation = Conversation(
                system=self.rng.choice(self.ctx.prompts),
                turns_left=scenario.turns.sample(self.rng),
                max_context_words=scenario.max_context_words,
            )
        messages = self.conversation.ask(words(self.rng, scenario.prompt_words.sample(self.rng)))
        timing = self.stream(messages, scenario.output_tokens.sample(self.rng))
        if timing is None:
            self.conversation = None  # a failed turn ends the conversation, as a user would start over
        else:
            self.conversation.answer(timing.text)


USER_CLASSES: dict[str, type[LLMUser]] = {
    "chat": ChatUser,
    "conversation": ConversationUser,
    "long_context": LongContextUser,
}


class ProfileShape(LoadTestShape):
    """Delegates to the profile's shape (``llmload.shapes``), set by the init hook."""

    shape: Shape | None = None

    def tick(self) -> tuple[int, float] | None:
        if self.shape is None:
            return None
        return self.shape.tick(self.get_run_time())  # type: ignore[no-untyped-call]
