"""bounded_load's fallback: when every replica is over the cap (fractional, waiting-weighted loads),
the least loaded one takes the request and the decision says load_bound."""

from __future__ import annotations

from inferstack.scheduling import EndpointLoad, RoutingRequest, make_policy


def test_when_every_replica_is_over_the_cap_the_least_loaded_takes_it() -> None:
    policy = make_policy("prefix_affinity", load_factor=1.0)
    # Loads 0.4 and 0.45: the cap is ceil(1.85 / 2) = 1, and both would be over it with one more.
    fleet = [EndpointLoad("http://a", 0, waiting=0.4), EndpointLoad("http://b", 0, waiting=0.45)]
    for tenant in range(20):  # whatever replica each prefix prefers
        decision = policy.pick(RoutingRequest("m", f"[tenant {tenant}] " * 100), fleet)
        assert (decision.url, decision.reason) == ("http://a", "load_bound")
