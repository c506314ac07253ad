"""The drift guard: probation against the engine's /tokenize, background samples, switch-off on a difference.

The engine is a stand-in HTTP server answering /tokenize with the ids the ``tokenizers`` library gives
for the *right* files (what a correct engine answers); the gateway side is the real ``KVRouting``. The
same against a real vLLM: service/tests/e2e/test_local_tokenizer_real.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from inferstack.config import KVEvents
from inferstack.kvcache.service import KVRouting
from inferstack.kvcache.settings import LocalTokenizerSettings

from ..waiting import until
from .tokenizer_files import reference_ids, write

MODEL = "m"
PROMPT = {"prompt": "river stone winter"}


@dataclass
class StandIn:
    """/tokenize of an engine serving ``truth``'s files; ``status`` other than 200 fails every call."""

    truth: Path
    status: int = 200
    calls: int = 0
    hold: asyncio.Event = field(default_factory=asyncio.Event)

    async def tokenize(self, request: web.Request) -> web.Response:
        self.calls += 1
        await self.hold.wait()
        body = await request.json()
        if self.status != 200:
            return web.json_response({"error": "no"}, status=self.status)
        return web.json_response({"tokens": reference_ids(self.truth, body["prompt"])})


@asynccontextmanager
async def engine(truth: Path, status: int = 200) -> AsyncIterator[tuple[StandIn, str]]:
    stand_in = StandIn(truth, status)
    stand_in.hold.set()
    app = web.Application()
    app.router.add_post("/tokenize", stand_in.tokenize)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield stand_in, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


class Routing(KVRouting):
    registry: CollectorRegistry


@asynccontextmanager
async def routing(directory: Path, draw: Callable[[], float] = lambda: 0.0, **local: Any) -> AsyncIterator[Routing]:
    settings = KVEvents(enabled=True, local_tokenizer=LocalTokenizerSettings(dirs={MODEL: str(directory)}, **local))
    registry = CollectorRegistry()
    async with aiohttp.ClientSession() as session:
        kv = Routing(settings, session, registry, draw)
        kv.registry = registry
        try:
            yield kv
        finally:
            await kv.close()


def checks(kv: Routing) -> dict[str, float | None]:
    labels = [{"model": MODEL, "outcome": o} for o in ("same", "differ", "failed")]
    return {x["outcome"]: kv.registry.get_sample_value("inferstack_kv_tokenizer_checks_total", x) for x in labels}


def local_on(kv: Routing) -> float | None:
    return kv.registry.get_sample_value("inferstack_kv_tokenizer_local", {"model": MODEL})


async def test_probation_uses_the_engines_ids_then_the_local_ones_alone(tmp_path: Path) -> None:
    right = write(tmp_path / "right")
    async with engine(right) as (stand_in, url), routing(right, check_first=2, check_fraction=0) as kv:
        truth = reference_ids(right, PROMPT["prompt"])
        assert local_on(kv) == 0
        for _ in range(2):
            assert await kv.token_ids(MODEL, PROMPT, "completions", [url]) == truth
        assert stand_in.calls == 2 and checks(kv) == {"same": 2, "differ": 0, "failed": 0}
        assert local_on(kv) == 1
        assert await kv.token_ids(MODEL, PROMPT, "completions", [url]) == truth
        assert stand_in.calls == 2  # past probation, with no sampling: the engine is not asked


async def test_a_drifted_tokenizer_is_switched_off_at_its_first_check(tmp_path: Path) -> None:
    right, wrong = write(tmp_path / "right"), write(tmp_path / "wrong", swap=("river", "stone"))
    async with engine(right) as (stand_in, url), routing(wrong, check_first=2) as kv:
        truth = reference_ids(right, PROMPT["prompt"])
        assert await kv.token_ids(MODEL, PROMPT, "completions", [url]) == truth
        assert checks(kv) == {"same": 0, "differ": 1, "failed": 0} and local_on(kv) == 0
        for _ in range(3):  # off for good: every request asks the engine, and nothing is compared any more
            assert await kv.token_ids(MODEL, PROMPT, "completions", [url]) == truth
        assert stand_in.calls == 4 and checks(kv)["differ"] == 1


async def test_a_failed_check_decides_nothing_and_the_local_ids_route(tmp_path: Path) -> None:
    # Before: no ids, and the request fell back to the approximate scorer. On the pressure bench every
    # such fallback was a probation check whose /tokenize missed its deadline (docs/routing.md).
    right = write(tmp_path / "right")
    async with engine(right, status=500) as (_, url), routing(right, check_first=1) as kv:
        assert await kv.token_ids(MODEL, PROMPT, "completions", [url]) == reference_ids(right, PROMPT["prompt"])
        assert checks(kv) == {"same": 0, "differ": 0, "failed": 1} and local_on(kv) == 0  # still on probation


async def test_a_drifted_tokenizer_routes_unchecked_ids_only_until_a_check_gets_an_answer(tmp_path: Path) -> None:
    right, wrong = write(tmp_path / "right"), write(tmp_path / "wrong", swap=("river", "stone"))
    async with engine(right, status=500) as (stand_in, url), routing(wrong, check_first=2) as kv:
        truth, drifted = reference_ids(right, PROMPT["prompt"]), reference_ids(wrong, PROMPT["prompt"])
        assert drifted != truth
        assert await kv.token_ids(MODEL, PROMPT, "completions", [url]) == drifted  # nothing contradicted it yet
        stand_in.status = 200
        assert await kv.token_ids(MODEL, PROMPT, "completions", [url]) == truth  # the answer routes, and checks
        assert checks(kv) == {"same": 0, "differ": 1, "failed": 1} and local_on(kv) == 0
        stand_in.status = 500
        assert await kv.token_ids(MODEL, PROMPT, "completions", [url]) is None  # off: a failure is a fallback again


async def test_background_samples_catch_drift_after_probation(tmp_path: Path) -> None:
    right, wrong = write(tmp_path / "right"), write(tmp_path / "wrong", swap=("river", "stone"))
    async with engine(right) as (stand_in, url), routing(wrong, lambda: 0.0, check_first=0, check_fraction=0.5) as kv:
        assert local_on(kv) == 1
        ours = await kv.token_ids(MODEL, PROMPT, "completions", [url])
        assert ours == reference_ids(wrong, PROMPT["prompt"])  # trusted: answered at once, checked behind
        await until(lambda: checks(kv)["differ"] == 1, "the background check to find the difference")
        assert local_on(kv) == 0
        assert await kv.token_ids(MODEL, PROMPT, "completions", [url]) == reference_ids(right, PROMPT["prompt"])


async def test_samples_are_drawn_and_one_check_per_model_runs_at_a_time(tmp_path: Path) -> None:
    right = write(tmp_path / "right")
    draws = iter([0.9, 0.1, 0.1, 0.1])  # fraction 0.5: skip, check, (busy), check
    async with (
        engine(right) as (stand_in, url),
        routing(right, lambda: next(draws), check_first=0, check_fraction=0.5) as kv,
    ):
        stand_in.hold.clear()
        for _ in range(3):
            await kv.token_ids(MODEL, PROMPT, "completions", [url])
        await until(lambda: stand_in.calls == 1, "the one check to reach the engine")
        stand_in.hold.set()
        await until(lambda: checks(kv)["same"] == 1, "the check to finish")
        await kv.token_ids(MODEL, PROMPT, "completions", [url])
        await until(lambda: checks(kv)["same"] == 2, "the next sampled check")
        assert stand_in.calls == 2


async def test_long_prompts_tokenized_off_the_loop_give_the_same_ids(tmp_path: Path) -> None:
    right = write(tmp_path / "right")
    long = {"prompt": " ".join(["river", "stone", "ledger"] * 400)}
    async with routing(right, check_first=0, check_fraction=0, thread_chars=100) as kv:
        assert await kv.token_ids(MODEL, long, "completions", []) == reference_ids(right, long["prompt"])


async def test_engine_mode_and_unknown_models_ask_the_engine(tmp_path: Path) -> None:
    right = write(tmp_path / "right")
    async with engine(right) as (stand_in, url), aiohttp.ClientSession() as session:
        kv = KVRouting(KVEvents(enabled=True, tokenizer="engine"), session, CollectorRegistry())
        assert kv.guard is None
        assert await kv.token_ids(MODEL, PROMPT, "completions", [url]) == reference_ids(right, PROMPT["prompt"])
        await kv.close()
    async with engine(right) as (stand_in, url), routing(right, check_first=0) as kv:
        assert await kv.token_ids("other", PROMPT, "completions", [url]) is not None
        assert stand_in.calls == 1


async def test_files_that_do_not_load_leave_the_model_to_the_engine(tmp_path: Path) -> None:
    async with routing(tmp_path / "absent", check_first=0) as kv:
        assert kv.guard is not None and kv.guard.models() == []
        assert local_on(kv) == 0, "configured but not loaded: a series at 0 (what the fallback alert reads)"


async def test_an_unexpected_error_switches_the_model_off_instead_of_failing_the_request(tmp_path: Path) -> None:
    endless = write(tmp_path / "m", template="{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}")
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    async with engine(endless) as (stand_in, url), routing(endless, check_first=0) as kv:
        assert local_on(kv) == 1
        await kv.token_ids(MODEL, chat, "chat", [url])  # RecursionError in the template: the engine is asked
        assert local_on(kv) == 0 and stand_in.calls == 1
        assert await kv.token_ids(MODEL, PROMPT, "completions", [url]) == reference_ids(endless, PROMPT["prompt"])


async def test_a_chat_of_many_messages_is_rendered_off_the_event_loop(tmp_path: Path) -> None:
    """A template's cost grows with the messages, not with the characters: a 4 MB chat of 145,000 short
    messages took 0.6 s in the template, on the loop, stopping every other request. Here a template
    that walks every message and writes little (so encoding is cheap and rendering is nearly all the
    work). Measured as the loop's longest pause against the whole call, so machine load cancels: on
    the loop the pause is nearly all of it; off the loop it is a few of the GIL's switch intervals."""
    walker = write(
        tmp_path / "walker",
        template="{% for m in messages %}{% if loop.last %}{{ m['content'] }}{% endif %}{% endfor %}",
    )
    chat = {"messages": [{"role": "user", "content": "hi"}] * 100_000}
    async with routing(walker, check_first=0, check_fraction=0, thread_chars=8192) as kv:
        kv.settings.max_prompt_chars = 100_000_000
        longest, last, done = 0.0, time.perf_counter(), False

        async def ticker() -> None:
            nonlocal longest, last
            while not done:
                await asyncio.sleep(0.005)  # a tick, not a wait for anything: 0 would fight the renderer for the GIL
                now = time.perf_counter()
                longest, last = max(longest, now - last), now

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        started = time.perf_counter()
        ids = await kv.token_ids(MODEL, chat, "chat", [])
        total = time.perf_counter() - started
        done = True
        await ticking
        assert ids == reference_ids(walker, "hi", add_special_tokens=False)
        assert longest < total / 3, f"the loop stopped for {longest:.3f} s of a {total:.3f} s tokenization"


async def test_a_prompt_over_the_limit_gets_no_token_ids_and_costs_no_tokenizer(tmp_path: Path) -> None:
    right = write(tmp_path / "right")
    long = {"prompt": "river " * 2_001}
    chat = {"messages": [{"role": "user", "content": "hi"}] * 400}  # 400 x (2 + 32) > 12,000
    async with engine(right) as (stand_in, url), routing(right, check_first=0, check_fraction=0) as kv:
        kv.settings.max_prompt_chars = 12_000
        assert await kv.token_ids(MODEL, long, "completions", [url]) is None
        assert await kv.token_ids(MODEL, chat, "chat", [url]) is None
        assert await kv.token_ids("other", long, "completions", [url]) is None  # not /tokenize either
        seconds = kv.registry.get_sample_value("inferstack_kv_local_tokenize_seconds_count")
        assert stand_in.calls == 0 and seconds == 0
        short = {"prompt": "river " * 1_000}
        assert await kv.token_ids(MODEL, short, "completions", [url]) == reference_ids(right, short["prompt"])


async def test_long_prompts_wait_a_bounded_time_for_a_tokenizer_thread(tmp_path: Path) -> None:
    """One thread: while it encodes a long prompt, a second long prompt waits ``thread_wait`` for it at
    most, then asks the engine (the executor's queue would have kept it without a deadline)."""
    right = write(tmp_path / "right")
    long = {"prompt": " ".join(["river", "stone", "ledger"] * 100_000)}
    other = {"prompt": " ".join(["winter", "harbour"] * 100)}
    async with (
        engine(right) as (stand_in, url),
        routing(right, check_first=0, check_fraction=0, thread_chars=100, threads=1, thread_wait=0.01) as kv,
    ):
        kv.settings.max_prompt_chars = 10_000_000  # 1.8 M characters: the thread is busy for a while
        first = asyncio.create_task(kv.token_ids(MODEL, long, "completions", [url]))
        await asyncio.sleep(0)  # the first takes the thread (no wait: it is free)
        assert await kv.token_ids(MODEL, other, "completions", [url]) == reference_ids(right, other["prompt"])
        assert not first.done() and stand_in.calls == 1  # the second was the engine's answer
        assert kv.registry.get_sample_value("inferstack_kv_local_tokenizer_busy_total") == 1
        assert await first == reference_ids(right, long["prompt"])
        assert await kv.token_ids(MODEL, other, "completions", [url]) is not None and stand_in.calls == 1
