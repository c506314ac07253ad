"""The ``adapter_bound`` filter's traffic bound, exactly: a replica is kept while its decayed decisions
plus this one stay within c x the mean share (this one counted) plus the slack; and what ``picked``
records (the decay, and forgetting replicas that are gone). Pure: the plugin on a cycle's state."""

from __future__ import annotations

import pytest

from inferstack.scheduling import CycleState, EndpointLoad, RoutingRequest
from inferstack.scheduling.plugins.adapter_bound import _DECAY, TRAFFIC_SLACK, AdapterBound

A, B = EndpointLoad("http://a", 0), EndpointLoad("http://b", 0)


def kept(traffic: dict[str, float], factor: float = 1.0) -> list[str]:
    """What the filter keeps of A and B (both idle: the in-flight bound keeps both) given ``traffic``."""
    bound = AdapterBound(adapter_load_factor=100.0, adapter_traffic_factor=factor)
    bound.traffic = dict(traffic)
    state = CycleState(RoutingRequest("a", ""), [A, B], {A.url: 0.0, B.url: 0.0})
    return [c.url for c in bound.filter(state, [A, B])]


def test_a_replica_exactly_at_the_traffic_cap_is_kept() -> None:
    # B has no decisions yet. cap = 1.0 x (9 + 0 + 1) / 2 + 5 = 10, and A with this one is at 9 + 1 = 10.
    assert TRAFFIC_SLACK == 5.0
    assert kept({A.url: 9.0}) == [A.url, B.url]


def test_a_replica_past_the_traffic_cap_is_dropped() -> None:
    # cap = (9.5 + 1) / 2 + 5 = 10.25; A would be at 10.5. B, with no record, counts as 0.
    assert kept({A.url: 9.5}) == [B.url]
    # The factor multiplies the mean share: at 1.2, cap = 1.2 x 10.5 / 2 + 5 = 11.3, and A stays.
    assert kept({A.url: 9.5}, factor=1.2) == [A.url, B.url]


def test_a_single_candidate_is_kept_whatever_its_traffic() -> None:
    bound = AdapterBound(adapter_load_factor=100.0, adapter_traffic_factor=1.0)
    bound.traffic = {A.url: 1000.0}
    state = CycleState(RoutingRequest("a", ""), [A], {A.url: 0.0})
    assert bound.filter(state, [A]) == [A]


def test_picked_decays_every_record_by_half_over_the_half_life_and_counts_the_choice() -> None:
    bound = AdapterBound()
    state = CycleState(RoutingRequest("a", ""), [A, B], {A.url: 0.0, B.url: 0.0})
    bound.picked(state, A.url)
    assert bound.traffic == {A.url: 1.0}
    bound.picked(state, B.url)
    assert bound.traffic == {A.url: pytest.approx(_DECAY), B.url: 1.0}
    for _ in range(200):  # TRAFFIC_HALF_LIFE decisions for B: A's record halves
        bound.picked(state, B.url)
    assert bound.traffic[A.url] == pytest.approx(0.5 * _DECAY)


def test_picked_forgets_replicas_that_are_gone_once_it_knows_more_than_twice_the_fleet_and_eight() -> None:
    bound = AdapterBound()
    state = CycleState(RoutingRequest("a", ""), [A, B], {A.url: 0.0, B.url: 0.0})
    for i in range(12):  # 12 replicas that came and went: 2 x 2 + 8 = 12 records are kept
        bound.picked(state, f"http://gone{i}")
    assert len(bound.traffic) == 12
    bound.picked(state, A.url)  # the 13th: every record of a replica not among the candidates goes
    assert list(bound.traffic) == [A.url]


def in_flight_kept(loads: list[float], factor: float = 2.0) -> list[float]:
    """The loads the in-flight bound keeps (no traffic recorded) at ``adapter_load_factor``."""
    fleet = [EndpointLoad(f"http://r{i}", int(load)) for i, load in enumerate(loads)]
    state = CycleState(RoutingRequest("a", ""), fleet, {c.url: c.in_flight for c in fleet})
    return [c.in_flight for c in AdapterBound(adapter_load_factor=factor).filter(state, fleet)]


def test_the_in_flight_bound_is_adapter_load_factor_times_the_mean_without_slack() -> None:
    # 3, 1, 0 and this request: mean 5/3; cap = ceil(2 x 5/3) = 4, so the replica at 3 takes it (at 1.5: cap 3).
    assert in_flight_kept([3, 1, 0]) == [3, 1, 0]
    assert in_flight_kept([3, 1, 0], factor=1.5) == [1, 0]
    # 1, 0, 0, 0: mean 1/2, cap = ceil(2 x 1/2) = 1, and no slack over it (bounded_load's 1 would keep it).
    assert in_flight_kept([1, 0, 0, 0]) == [0, 0, 0]
