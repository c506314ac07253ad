"""The package's public names, the factory, and the chat rendering used for hashing."""

from __future__ import annotations

import pytest

import inferstack.scheduling as scheduling
from inferstack.scheduling import POLICIES, REASONS, make_policy, render_chat_prompt


def test_public_names_are_deliberate() -> None:
    assert sorted(scheduling.__all__) == sorted(
        [
            "POLICIES",
            "REASONS",
            "CycleState",
            "Decision",
            "EndpointLoad",
            "Filter",
            "NoCandidateError",
            "Picker",
            "PrefixIndex",
            "Profile",
            "Reason",
            "Route",
            "RoutingRequest",
            "Scheduler",
            "Scorer",
            "make_policy",
            "plugin_classes",
            "prefix_chain",
            "render_chat_prompt",
            "rendezvous_order",
        ]
    )


def test_reasons_match_the_metrics_catalogue() -> None:
    assert set(REASONS) == {
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
        # the adapter scorer's (adapter_affinity), also in inferstack_adapter_routing_decisions_total
        "loaded",
        "free_slot",
        "least_loaded",
        "capped",
        "unknown_state",
    }


@pytest.mark.parametrize("name", POLICIES)
def test_make_policy_accepts_every_setting(name: str) -> None:
    policy = make_policy(
        name, load_factor=1.5, waiting_weight=0.5, block_chars=128, max_blocks=64, home_blocks=2, index_capacity=1000
    )
    assert policy.name == name


def test_make_policy_rejects_unknown_names_and_settings() -> None:
    with pytest.raises(ValueError, match="unknown routing policy"):
        make_policy("random")
    with pytest.raises(ValueError, match="load_factr"):
        make_policy("session", load_factr=2)
    with pytest.raises(ValueError):
        make_policy("prefix_affinity", load_factor=0.5)


def test_chat_rendering_is_stable_and_grows_by_appending() -> None:
    turn1 = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    turn2 = [*turn1, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "More"}]
    assert render_chat_prompt(turn1) == render_chat_prompt([dict(m) for m in turn1])
    assert render_chat_prompt(turn2).startswith(render_chat_prompt(turn1))
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert render_chat_prompt(parts) == render_chat_prompt([{"role": "user", "content": "Hi"}])
    assert render_chat_prompt([{"role": "user", "content": "Hi"}]) != render_chat_prompt(
        [{"role": "system", "content": "Hi"}]
    )


def test_chat_rendering_keeps_names_and_skips_what_is_not_a_message() -> None:
    hi = {"role": "user", "content": "Hi"}
    # The same words from two participants are two different prompts.
    assert render_chat_prompt([{**hi, "name": "ann"}]) != render_chat_prompt([{**hi, "name": "bob"}])
    assert render_chat_prompt([{**hi, "name": "ann"}]) != render_chat_prompt([hi])
    # Something that is not a message is skipped, and the messages after it still count.
    later = {"role": "user", "content": "Later"}
    assert render_chat_prompt([hi, "junk", later]) == render_chat_prompt([hi, later])  # type: ignore[list-item]
    # Text parts read as their text run together; other parts by their content, key order aside.
    split = [{"type": "text", "text": "H"}, {"type": "text", "text": "i"}]
    assert render_chat_prompt([{"role": "user", "content": split}]) == render_chat_prompt([hi])
    image = {"type": "image_url", "image_url": {"url": "data:a", "detail": "low"}}
    reordered = {"image_url": {"detail": "low", "url": "data:a"}, "type": "image_url"}
    other = {"type": "image_url", "image_url": {"url": "data:b", "detail": "low"}}
    assert render_chat_prompt([{"role": "user", "content": [image]}]) == render_chat_prompt(
        [{"role": "user", "content": [reordered]}]
    )
    assert render_chat_prompt([{"role": "user", "content": [image]}]) != render_chat_prompt(
        [{"role": "user", "content": [other]}]
    )
    # Content of another shape (not text, not parts) also by its JSON, key order aside.
    odd = [{"role": "user", "content": {"a": 1, "b": 2}}]
    assert render_chat_prompt(odd) == render_chat_prompt([{"role": "user", "content": {"b": 2, "a": 1}}])
    assert render_chat_prompt(odd) != render_chat_prompt([{"role": "user", "content": {"a": 2, "b": 2}}])
