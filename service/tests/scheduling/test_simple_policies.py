"""The round_robin, least_load and session profiles: rotation, load order, stickiness, fallbacks."""

from __future__ import annotations

from collections import Counter

import pytest

from inferstack.scheduling import EndpointLoad, NoCandidateError, RoutingRequest, make_policy

REQ = RoutingRequest(model="m", prompt="hello")


def fleet(*in_flight: int, waiting: float | None = None) -> list[EndpointLoad]:
    return [EndpointLoad(f"http://r{i}", n, waiting) for i, n in enumerate(in_flight)]


def test_round_robin_rotates_and_skips_excluded() -> None:
    rr = make_policy("round_robin")
    picks = [rr.pick(REQ, fleet(0, 0, 0)).url for _ in range(6)]
    assert picks == ["http://r0", "http://r1", "http://r2"] * 2
    assert {rr.pick(REQ, fleet(0, 0, 0), frozenset({"http://r1"})).url for _ in range(4)} == {"http://r0", "http://r2"}
    assert rr.pick(REQ, fleet(0)).reason == "only_candidate"
    with pytest.raises(NoCandidateError):
        rr.pick(REQ, fleet(0), frozenset({"http://r0"}))


def test_least_load_counts_in_flight_and_weighted_waiting() -> None:
    ll = make_policy("least_load", waiting_weight=2.0)
    assert ll.pick(REQ, fleet(3, 1, 2)).url == "http://r1"
    busy_queue = [EndpointLoad("http://a", 1, waiting=3), EndpointLoad("http://b", 4, waiting=0)]
    assert ll.pick(REQ, busy_queue).url == "http://b"  # 1 + 2*3 > 4
    unknown = [EndpointLoad("http://a", 1, waiting=None), EndpointLoad("http://b", 2, waiting=None)]
    assert ll.pick(REQ, unknown).url == "http://a"  # stale scrape: in-flight alone
    assert ll.pick(REQ, fleet(3, 1, 2), frozenset({"http://r1"})).url == "http://r2"
    assert ll.pick(REQ, fleet(1, 1)).reason == "least_load"


def test_least_load_spreads_exact_ties() -> None:
    ll = make_policy("least_load")
    assert len({ll.pick(REQ, fleet(0, 0, 0, 0)).url for _ in range(8)}) == 4


def test_session_sticks_per_key_and_spreads_keys() -> None:
    s = make_policy("session")
    nodes = fleet(0, 0, 0, 0)
    for key in ("alice", "bob", "carol"):
        req = RoutingRequest("m", "x", session_key=key)
        picks = {s.pick(req, nodes).url for _ in range(5)}
        assert len(picks) == 1
        assert s.pick(req, nodes).reason == "session"
    spread = Counter(s.pick(RoutingRequest("m", "x", f"user-{i}"), nodes).url for i in range(400))
    assert len(spread) == 4 and min(spread.values()) > 50


def test_session_moves_only_the_sessions_of_a_removed_replica() -> None:
    s = make_policy("session", load_factor=100)
    keys = [f"user-{i}" for i in range(200)]
    before = {k: s.pick(RoutingRequest("m", "x", k), fleet(0, 0, 0, 0)).url for k in keys}
    after = {k: s.pick(RoutingRequest("m", "x", k), fleet(0, 0, 0)).url for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == "http://r3" for k in moved)


def test_session_spills_at_the_load_bound_and_falls_back_without_key() -> None:
    s = make_policy("session", load_factor=1.25)
    req = RoutingRequest("m", "x", session_key="alice")
    home = s.pick(req, fleet(0, 0, 0, 0)).url
    loaded = [EndpointLoad(e.url, 10 if e.url == home else 2) for e in fleet(0, 0, 0, 0)]
    spilled = s.pick(req, loaded)
    assert spilled.url != home and spilled.reason == "load_bound"
    assert s.pick(RoutingRequest("m", "x"), fleet(2, 0, 1)) == s.pick(RoutingRequest("m", "x"), fleet(2, 0, 1))
    assert s.pick(RoutingRequest("m", "x"), fleet(2, 0, 1)).reason == "least_load"
