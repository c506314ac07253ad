"""The scheduler renders only what a profile hashes: nothing for most, a bounded prefix for ``prefix``."""

from __future__ import annotations

from types import MappingProxyType

from prometheus_client import CollectorRegistry

from inferstack.config import Routing, Settings
from inferstack.metrics.gateway import GatewayMetrics
from inferstack.scheduling import Scheduler, prefix_chain, render_chat_prompt
from inferstack.scheduling.scheduler import OVERRIDE_HEADER, prompt_of

# A long conversation: 64 turns of 64 KiB, 4 MiB rendered in full.
CHAT = {
    "messages": [{"role": "user" if i % 2 else "assistant", "content": f"turn {i} " + "x" * 65536} for i in range(64)]
}


def scheduler() -> Scheduler:
    return Scheduler(Settings(upstreams=["http://127.0.0.1:9"]), GatewayMetrics(CollectorRegistry()))


def test_profiles_without_a_prompt_scorer_render_nothing() -> None:
    s = scheduler()
    for policy in ("least_load", "session", "round_robin"):
        route = s.route("m", CHAT, "chat", {OVERRIDE_HEADER: policy})
        assert route.request.prompt == "", policy
        route = s.route("m", {"prompt": "a completion"}, "completions", {OVERRIDE_HEADER: policy})
        assert route.request.prompt == "", policy


def test_prefix_affinity_renders_only_the_prefix_it_hashes_and_hashes_it_as_before() -> None:
    s = scheduler()
    # Long messages, then many short ones (the bound is on their sum, not on one message).
    short = {"messages": [{"role": "user", "content": f"message {i}"} for i in range(4000)]}
    for chat in (CHAT, short):
        route = s.route("m", chat, "chat", {OVERRIDE_HEADER: "prefix_affinity"})
        full = render_chat_prompt(chat["messages"])
        assert len(route.request.prompt) == 256 * 128 < len(full)
        assert full.startswith(route.request.prompt)
        assert prefix_chain("m", route.request.prompt, 256, 128) == prefix_chain("m", full, 256, 128)


def test_completions_and_embeddings_are_routed_by_their_own_prompt_field() -> None:
    s = scheduler()
    header = {OVERRIDE_HEADER: "prefix_affinity"}
    both = {"prompt": "a completion", "input": "an embedding"}
    assert s.route("m", both, "completions", header).request.prompt == "a completion"
    assert s.route("m", both, "embeddings", header).request.prompt == "an embedding"


def test_a_batch_is_routed_by_its_first_prompt_and_token_ids_by_their_numbers() -> None:
    assert prompt_of({"prompt": ["first", "second"]}, "completions") == "first"
    assert prompt_of({"input": [[1, 2], [3]]}, "embeddings") == "[1, 2]"
    assert prompt_of({"prompt": [7, 8, 9]}, "completions") == "[7, 8, 9]"


def test_a_body_without_a_usable_prompt_gives_an_empty_one_not_an_error() -> None:
    # The API validates bodies before routing; routing itself must not fail on what it cannot hash.
    bodies: tuple[tuple[dict[str, object], str], ...] = (
        ({"prompt": []}, "completions"),
        ({}, "chat"),
        ({"messages": "hi"}, "chat"),
        ({}, "embeddings"),
    )
    for payload, kind in bodies:
        assert prompt_of(payload, kind) == "", (payload, kind)


def test_a_message_that_is_a_mapping_but_not_a_dict_is_rendered_as_one() -> None:
    message = {"role": "user", "content": "hello"}
    assert render_chat_prompt([MappingProxyType(message)]) == render_chat_prompt([message]) != ""


def test_the_routing_knobs_reach_the_profiles() -> None:
    # block_chars x max_blocks is what prefix_affinity hashes, so what the scheduler renders.
    settings = Settings(upstreams=["http://127.0.0.1:9"], routing=Routing(block_chars=64, max_blocks=4))
    s = Scheduler(settings, GatewayMetrics(CollectorRegistry()))
    route = s.route("m", CHAT, "chat", {OVERRIDE_HEADER: "prefix_affinity"})
    assert route.request.prompt == render_chat_prompt(CHAT["messages"])[: 64 * 4]
