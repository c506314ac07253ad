"""The scheduling framework: plugins found by name, profiles from configuration, weighted scores."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest

from inferstack.config import ProfileSpec, Routing, Settings
from inferstack.scheduling import EndpointLoad, PrefixIndex, Profile, RoutingRequest, make_policy, plugin_classes
from inferstack.scheduling.plugins.adapter_bound import AdapterBound
from inferstack.scheduling.plugins.bounded_load import BoundedLoad
from inferstack.scheduling.plugins.max_score import MaxScore
from inferstack.scheduling.plugins.prefix import Prefix

FLEET = [EndpointLoad(f"http://r{i}", 0) for i in range(4)]


def test_every_plugin_module_is_found_with_its_kind() -> None:
    kinds = {name: cls.kind for name, cls in plugin_classes().items()}
    assert kinds == {
        "bounded_load": "filter",
        "adapter_bound": "filter",
        "prefix": "scorer",
        "precise_prefix": "scorer",
        "load": "scorer",
        "kv_cache": "scorer",
        "session": "scorer",
        "adapter": "scorer",
        "max_score": "picker",
        "round_robin": "picker",
    }


def test_a_configured_profile_weighs_its_scorers() -> None:
    # session outweighs prefix: a long shared prompt still goes where the session lives.
    spec = ProfileSpec(filters=("bounded_load",), scorers={"session": 10.0, "prefix": 1.0})
    profile = make_policy("mine", {"mine": spec}, load_factor=100)
    prompt = "the same long system prompt " * 100
    homes = {profile.pick(RoutingRequest("m", prompt, f"user-{i}"), FLEET).url for i in range(40)}
    assert len(homes) == 4  # sessions spread although the prompt is shared
    flipped = make_policy("mine", {"mine": ProfileSpec(scorers={"session": 1.0, "prefix": 10.0})})
    first = flipped.pick(RoutingRequest("m", prompt, "user-0"), FLEET)
    assert {flipped.pick(RoutingRequest("m", prompt, f"user-{i}"), FLEET).url for i in range(40)} == {first.url}


def test_profiles_are_validated_when_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERSTACK_ROUTING__PROFILES", '{"mine": {"scorers": {"session": 2}}}')
    monkeypatch.setenv("INFERSTACK_ROUTING_POLICY", "mine")
    settings = Settings()
    assert settings.routing.all_profiles()["mine"].scorers == {"session": 2.0}
    with pytest.raises(ValueError, match="no scorer plugin called 'nope'"):
        make_policy("bad", {"bad": ProfileSpec(scorers={"nope": 1.0})})
    with pytest.raises(ValueError, match="no picker plugin called 'prefix'"):
        make_policy("bad", {"bad": ProfileSpec(picker="prefix")})
    with pytest.raises(ValueError, match="weights"):
        ProfileSpec(scorers={"session": 0})


def test_every_plugin_knobs_default_is_the_routing_settings_default() -> None:
    # make_policy without knobs (benchmarks, tools) must decide as a gateway with default settings does.
    defaults = Routing()

    def knobs(plugin: object) -> dict[str, object]:
        """Its numbers, and those of what it built from them (prefix's index and its capacity)."""
        names = vars(plugin) if hasattr(plugin, "__dict__") else getattr(type(plugin), "__slots__", ())
        out: dict[str, object] = {}
        for k in names:
            v = getattr(plugin, k)
            if isinstance(v, int | float):
                out[k] = v
            elif hasattr(v, "__dict__") or hasattr(type(v), "__slots__"):
                out |= {f"{k}.{name}": n for name, n in knobs(v).items()}
        return out

    for name, cls in plugin_classes().items():
        given = {p: getattr(defaults, p) for p in inspect.signature(cls).parameters}
        assert knobs(cls()) == knobs(cls(**given)), name
    # The profile's own knob: built without it (as make_policy without settings), the settings' default.
    assert Profile("p", [], [], MaxScore()).waiting_weight == defaults.waiting_weight
    assert make_policy("least_load").waiting_weight == defaults.waiting_weight
    assert make_policy("least_load", waiting_weight=0.25).waiting_weight == 0.25


BELOW_MINIMUM = [
    (lambda: Prefix(block_chars=0), "block_chars, max_blocks and home_blocks must be >= 1"),
    (lambda: Prefix(max_blocks=0), "block_chars, max_blocks and home_blocks must be >= 1"),
    (lambda: Prefix(home_blocks=0), "block_chars, max_blocks and home_blocks must be >= 1"),
    (lambda: PrefixIndex(0), "capacity and replicas_per_block must be >= 1"),
    (lambda: PrefixIndex(1, replicas_per_block=0), "capacity and replicas_per_block must be >= 1"),
    (lambda: BoundedLoad(load_factor=0.99), "load_factor must be >= 1"),
    (lambda: BoundedLoad(load_slack=-0.01), "load_slack must be >= 0"),
    (lambda: AdapterBound(adapter_traffic_factor=0.99), "adapter_traffic_factor must be >= 1"),
]


@pytest.mark.parametrize(("build", "message"), BELOW_MINIMUM)
def test_a_knob_below_its_minimum_is_refused_by_name(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        build()
    assert str(raised.value) == message


def test_every_knob_at_its_minimum_is_accepted() -> None:
    Prefix(block_chars=1, max_blocks=1, home_blocks=1, index_capacity=1)
    PrefixIndex(1, replicas_per_block=1)
    BoundedLoad(load_factor=1, load_slack=0)
    AdapterBound(adapter_load_factor=1, adapter_traffic_factor=1)


def test_an_unknown_policy_or_knob_is_refused_with_every_choice_or_every_typo_named() -> None:
    with pytest.raises(ValueError) as raised:
        make_policy("random")
    assert str(raised.value) == (
        "unknown routing policy 'random'; choose one of prefix_affinity, least_load, session, round_robin,"
        " precise_prefix, adapter_affinity"
    )
    with pytest.raises(ValueError) as raised:
        make_policy("session", load_factr=2, blok_chars=64)
    assert str(raised.value) == "unknown routing settings: blok_chars, load_factr"
