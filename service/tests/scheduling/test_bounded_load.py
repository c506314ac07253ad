"""bounded_load's cap: the mean plus a slack at small counts (a pod counts only its own requests),
c x the mean beyond them, and the fallback when every replica is over it."""

from __future__ import annotations

import pytest

from inferstack.scheduling import EndpointLoad, RoutingRequest, make_policy

PROMPT = "[tenant 7] " * 100


def fleet(n: int, busy: dict[str, int] | None = None) -> list[EndpointLoad]:
    return [EndpointLoad(f"http://r{i}", (busy or {}).get(f"http://r{i}", 0)) for i in range(n)]


def test_when_every_replica_is_over_the_cap_the_least_loaded_takes_it() -> None:
    policy = make_policy("prefix_affinity", load_factor=1.0, load_slack=0.0)
    # Loads 0.4 and 0.45: the cap is ceil(1.85 / 2) = 1, and both would be over it with one more.
    fleet = [EndpointLoad("http://a", 0, waiting=0.4), EndpointLoad("http://b", 0, waiting=0.45)]
    for tenant in range(20):  # whatever replica each prefix prefers
        decision = policy.pick(RoutingRequest("m", f"[tenant {tenant}] " * 100), fleet)
        assert (decision.url, decision.reason) == ("http://a", "load_bound")


@pytest.mark.parametrize("policy_name", ["prefix_affinity", "session"])
def test_a_pod_with_one_request_in_flight_keeps_the_next_on_the_same_replica_of_three(policy_name: str) -> None:
    # ceil(1.5 x 2/3) is 1: without the slack the holder of the prefix, idle but for this pod's one
    # request, was over the bound and the turn went elsewhere (the real-engine bench's load_bound turns).
    policy = make_policy(policy_name)
    request = RoutingRequest("m", PROMPT, session_key="conversation-1")
    home = policy.pick(request, fleet(3)).url
    decision = policy.pick(request, fleet(3, {home: 1}))
    assert decision.url == home and decision.reason != "load_bound"
    # Two in flight there and none elsewhere: mean 1, the cap is 2, the third goes elsewhere.
    assert policy.pick(request, fleet(3, {home: 2})).reason == "load_bound"


def test_the_slack_still_binds_on_two_replicas() -> None:
    # A factor of 2 would never bind here (ceil(2 x (3 + 1) / 2) = 4): one replica would take everything.
    policy = make_policy("prefix_affinity")
    request = RoutingRequest("m", PROMPT)
    home = policy.pick(request, fleet(2)).url
    assert policy.pick(request, fleet(2, {home: 2})).url == home
    decision = policy.pick(request, fleet(2, {home: 3}))
    assert decision.url != home and decision.reason == "load_bound"


def test_at_larger_counts_the_factor_binds() -> None:
    # Mean 4 with the new request: max(ceil(1.5 x 4), ceil(4 + 1)) = 6, so a holder at 6 spills.
    policy = make_policy("prefix_affinity")
    request = RoutingRequest("m", PROMPT)
    home = policy.pick(request, fleet(3)).url
    others = [f"http://r{i}" for i in range(3) if f"http://r{i}" != home]
    assert policy.pick(request, fleet(3, {home: 5, others[0]: 3, others[1]: 3})).url == home
    assert policy.pick(request, fleet(3, {home: 6, others[0]: 3, others[1]: 2})).reason == "load_bound"


def test_a_negative_slack_is_refused() -> None:
    with pytest.raises(ValueError, match="load_slack"):
        make_policy("prefix_affinity", load_slack=-1)
