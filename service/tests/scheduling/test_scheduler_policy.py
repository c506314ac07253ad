"""Which profile a request gets: the override header's, else the adapter policy for a LoRA adapter the
gateway can tell from a model (a placement that knows it), else the routing policy; and what the route
carries besides (the session key, the prompt only for a profile that hashes it)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from inferstack.config import Routing, Settings
from inferstack.errors import InvalidRequestError, PermissionDeniedError
from inferstack.metrics.gateway import GatewayMetrics
from inferstack.scheduling import Scheduler
from inferstack.scheduling.scheduler import OVERRIDE_HEADER, SESSION_HEADER
from inferstack.upstream.adapters import AdapterPlacement
from inferstack.upstream.endpoint import Endpoint

URL = "http://127.0.0.1:9"


def placement() -> AdapterPlacement:
    """An engine that lists the adapter ``tone`` on the base model ``base``."""
    where = AdapterPlacement(None)
    where.observe_cards(URL, {"base": {"id": "base", "parent": None}, "tone": {"id": "tone", "parent": "base"}})
    return where


def scheduler(
    where: AdapterPlacement | None, registry: CollectorRegistry | None = None, **routing: object
) -> Scheduler:
    settings = Settings(upstreams=[URL], routing_policy="least_load", routing=Routing(**routing))
    return Scheduler(settings, GatewayMetrics(registry or CollectorRegistry()), placement=where)


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
    assert str(raised.value) == (
        f"Unknown routing policy 'fastest' in {OVERRIDE_HEADER}; choose one of prefix_affinity, least_load, session,"
        " round_robin, adapter_affinity."
    )


def test_a_request_that_may_not_override_is_refused_and_without_the_header_routes_as_before() -> None:
    s = scheduler(placement())
    with pytest.raises(PermissionDeniedError) as raised:
        s.route("base", {"prompt": "hi"}, "completions", {OVERRIDE_HEADER: "least_load"}, may_override=False)
    assert (raised.value.status, raised.value.code) == (403, "routing_override_disabled")
    assert OVERRIDE_HEADER in str(raised.value)
    # An empty header is no choice: the operator's profiles route, as they do without it.
    empty = {OVERRIDE_HEADER: ""}
    assert s.route("base", {"prompt": "hi"}, "completions", empty, may_override=False).policy == "least_load"
    assert s.route("tone", {"prompt": "hi"}, "completions", {}, may_override=False).policy == "adapter_affinity"


def test_the_session_is_the_header_else_the_user_field_as_text() -> None:
    s = scheduler(None)
    header = {OVERRIDE_HEADER: "session"}
    assert s.route("m", {"user": "u1"}, "completions", {**header, SESSION_HEADER: "s1"}).request.session_key == "s1"
    assert s.route("m", {"user": 42}, "completions", header).request.session_key == "42"
    assert s.route("m", {"user": ""}, "completions", header).request.session_key is None
    route = s.route("m", {"prompt": "hi"}, "completions", header)
    assert (route.request.model, route.request.session_key, route.reason) == ("m", None, None)


def test_an_adapter_decision_is_counted_under_the_adapter_and_its_reason_and_a_models_is_not() -> None:
    registry = CollectorRegistry()
    s = scheduler(placement(), registry)
    fleet = [Endpoint(URL, in_flight=3), Endpoint("http://127.0.0.1:10")]  # only the first holds tone
    route = s.route("tone", {"prompt": "hi"}, "completions", {})
    assert s.pick(route, fleet) is fleet[0] and route.reason == "loaded"
    route = s.route("base", {"prompt": "hi"}, "completions", {})
    assert s.pick(route, fleet) is fleet[1] and route.reason == "least_load"
    counted = [
        (sample.labels, sample.value)
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "inferstack_adapter_routing_decisions_total"
    ]
    assert counted == [({"model": "tone", "reason": "loaded"}, 1.0)]  # the base model's decision is not one
    routing = "inferstack_routing_decisions_total"
    assert registry.get_sample_value(routing, {"policy": "adapter_affinity", "reason": "loaded"}) == 1
    assert registry.get_sample_value(routing, {"policy": "least_load", "reason": "least_load"}) == 1
