from pathlib import Path

import pytest

from llmload.profile import KINDS, LOADTESTS, PROFILES, load_profile
from llmload.slo import load_thresholds


@pytest.mark.parametrize("name", sorted(p.stem for p in PROFILES.glob("*.yaml")))
def test_every_checked_in_profile_loads_with_its_slo(name: str) -> None:
    profile = load_profile(name)
    assert profile.scenarios and profile.shape.duration > 0
    assert load_thresholds(profile.slo)


def test_smoke_runs_every_scenario_briefly_against_the_local_slo() -> None:
    smoke = load_profile("smoke")
    assert {s.kind for s in smoke.scenarios if s.weight} == set(KINDS)
    assert smoke.shape.duration == 30 and smoke.slo == LOADTESTS / "slo-local.yaml"


def test_release_profiles_extend_chat_and_differ_only_in_shape() -> None:
    chat = load_profile("chat")
    for name, shape in (("step", "step"), ("spike", "spike"), ("soak", "soak")):
        profile = load_profile(name)
        assert profile.shape.name == shape
        assert profile.scenarios == chat.scenarios


def test_overrides_from_the_command_line() -> None:
    profile = load_profile("chat", users=4, duration=20, shape="spike")
    assert (profile.shape.name, profile.shape.duration) == ("spike", 20)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return str(path)


SHAPE = "shape: {name: steady, users: 1, duration: 5}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            SHAPE + "scenarios: {chat: {prompt_words: 5, output_tokens: 5, thinktime: {}}}",
            r"scenarios.chat: unknown keys",
        ),
        (SHAPE + "scenarios: {rag: {prompt_words: 5, output_tokens: 5}}", "scenarios.rag: unknown scenario"),
        (SHAPE + "scenarios: {chat: {weight: 0, prompt_words: 5, output_tokens: 5}}", "with weight >= 1"),
        (SHAPE + "scenarios: {chat: {prompt_words: 5, output_tokens: 5}}\nmodels: {m: 0}", "models.m"),
        (
            SHAPE + "scenarios: {chat: {prompt_words: 5, output_tokens: 5}}\nrequest: {timeouts: {read: 1}}",
            "request.timeouts: unknown keys",
        ),
        ("scenarios: {chat: {prompt_words: 5, output_tokens: 5}}\nshapes: {}", "unknown keys"),
    ],
)
def test_mistakes_fail_before_any_traffic_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_profile(write(tmp_path, text))


def test_unknown_profile_names_list_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: chat, smoke"):
        load_profile("nope")


def test_models_as_a_list_get_equal_weights(tmp_path: Path) -> None:
    path = write(tmp_path, SHAPE + "scenarios: {chat: {prompt_words: 5, output_tokens: 5}}\nmodels: [a, b]")
    assert load_profile(path).models == {"a": 1, "b": 1}
