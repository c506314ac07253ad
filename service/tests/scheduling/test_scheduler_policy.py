"""Which profile a request gets: the override header's, else the adapter policy for a LoRA adapter the
gateway can tell from a model (a placement that knows it), else the routing policy; and what the route
carries besides (the session key, the prompt only for a profile that hashes it)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from inferstack.config import Routing, Settings
from inferstack.errors import InvalidRequestError
from inferstack.metrics.gateway import GatewayMetrics
from inferstack.scheduling import Scheduler
from inferstack.scheduling.scheduler import OVERRIDE_HEADER, SESSION_HEADER
from inferstack.upstream.adapters import AdapterPlacement

URL = "http://127.0.0.1:9"


def placement() -> AdapterPlacement:
    """An engine that lists the adapter ``tone`` on the base model ``base``."""
    where = AdapterPlacement(None)
    where.observe_cards(URL, {"base": {"id": "base", "parent": None}, "tone": {"id": "tone", "parent": "base"}})
    return where


def scheduler(where: AdapterPlacement | None, **routing: object) -> Scheduler:
    settings = Settings(upstreams=[URL], routing_policy="least_load", routing=Routing(**routing))
    return Scheduler(settings, GatewayMetrics(CollectorRegistry()), placement=where)


def test_an_adapter_gets_the_adapter_policy_and_its_base_model_the_routing_policy() -> None:
    s = scheduler(placement())
    assert s.route("tone", {"prompt": "hi"}, "completions", {}).policy == "adapter_affinity"
    assert s.route("base", {"prompt": "hi"}, "completions", {}).policy == "least_load"


def test_the_override_header_wins_over_the_adapter_policy() -> None:
    s = scheduler(placement())
    assert s.route("tone", {"prompt": "hi"}, "completions", {OVERRIDE_HEADER: "round_robin"}).policy == "round_robin"


@pytest.mark.parametrize(("where", "policy"), [(True, ""), (False, "adapter_affinity")])
def test_without_an_adapter_policy_or_a_placement_adapters_follow_the_routing_policy(where: bool, policy: str) -> None:
    s = scheduler(placement() if where else None, adapter_policy=policy)
    assert s.route("tone", {"prompt": "hi"}, "completions", {}).policy == "least_load"


def test_an_unknown_policy_in_the_header_is_the_clients_error_naming_the_choices() -> None:
    s = scheduler(None)
    with pytest.raises(InvalidRequestError) as raised:
        s.route("m", {"prompt": "hi"}, "completions", {OVERRIDE_HEADER: "fastest"})
    assert "'fastest'" in str(raised.value) and OVERRIDE_HEADER in str(raised.value)
    assert "least_load" in str(raised.value) and "round_robin" in str(raised.value)


def test_the_session_is_the_header_else_the_user_field_as_text() -> None:
    s = scheduler(None)
    header = {OVERRIDE_HEADER: "session"}
    assert s.route("m", {"user": "u1"}, "completions", {**header, SESSION_HEADER: "s1"}).request.session_key == "s1"
    assert s.route("m", {"user": 42}, "completions", header).request.session_key == "42"
    assert s.route("m", {"user": ""}, "completions", header).request.session_key is None
    route = s.route("m", {"prompt": "hi"}, "completions", header)
    assert (route.request.model, route.request.session_key, route.reason) == ("m", None, None)
