"""The ``adapter`` scorer and the ``adapter_affinity`` profile over a placement record: tiers, reasons,
the load cap. Pure: no engines."""

from __future__ import annotations

import pytest

from inferstack.catalog import AdapterRoute, AdapterVersion, Catalog, LoraSpec
from inferstack.scheduling import EndpointLoad, Profile, RoutingRequest, make_policy
from inferstack.scheduling.plugins.adapter import BUSY, EVICT_IDLE, FREE_SLOT, LOADED, NUDGE, UNKNOWN, Adapter
from inferstack.upstream.adapters import AdapterPlacement

R1, R2, R3 = "http://r1", "http://r2", "http://r3"


def placement(slots: int | None = 2) -> AdapterPlacement:
    names = ("a", "b", "c", "d")
    catalog = Catalog(
        models=frozenset({"base"}),
        aliases={},
        adapters={n: AdapterRoute("base", ((n, 100),)) for n in names},
        versions={n: AdapterVersion(n, "base", f"/adapters/{n}") for n in names},
        lora={"base": LoraSpec(slots, "")} if slots is not None else {},
    )
    return AdapterPlacement(catalog)


def policy(where: AdapterPlacement, load_factor: float = 2.0, traffic_factor: float = 100.0) -> tuple[Profile, Adapter]:
    profile = make_policy("adapter_affinity", adapter_load_factor=load_factor, adapter_traffic_factor=traffic_factor)
    scorer = profile.plugin("adapter")
    assert isinstance(scorer, Adapter)
    scorer.attach(where)
    return profile, scorer


def fleet(*in_flight: int) -> list[EndpointLoad]:
    return [EndpointLoad(url, n) for url, n in zip((R1, R2, R3), in_flight, strict=False)]


def test_tiers_loaded_then_free_slot_then_an_idle_slot_then_busy() -> None:
    where = placement()
    scorer = Adapter()
    scorer.attach(where)
    where.sent(R1, "a")  # R1: a (one free slot)
    where.sent(R2, "b")
    where.sent(R2, "c")  # R2: b, c in flight: full and busy
    where.sent(R3, "b")
    where.sent(R3, "c")
    where.done(R3, "b")
    where.done(R3, "c")  # R3: b, c idle: full, evictable
    assert scorer.tier(R1, "a", "base")[0] == 1.0
    assert scorer.tier(R1, "d", "base")[0] == 0.5
    assert scorer.tier(R3, "d", "base")[0] == 0.2
    assert scorer.tier(R2, "d", "base")[0] == 0.0


def test_the_profile_prefers_the_holder_and_says_why() -> None:
    where = placement()
    profile, _ = policy(where)
    where.sent(R2, "a")
    where.done(R2, "a")
    decision = profile.pick(RoutingRequest("a", ""), fleet(0, 0, 0))
    assert (decision.url, decision.reason, decision.adapter_reason) == (R2, "loaded", "loaded")
    # Another adapter: R2 still has a free slot, but so do the others; load decides among equals.
    decision = profile.pick(RoutingRequest("b", ""), fleet(0, 1, 0))
    assert decision.url in (R1, R3) and decision.adapter_reason == "free_slot"


def test_the_load_cap_moves_a_hot_adapter_and_it_is_capped() -> None:
    where = placement()
    profile, _ = policy(where, load_factor=1.25)
    where.sent(R1, "a")
    # R1 holds a but carries 4 of 4 in flight: over 1.25 x the mean, so R2 takes it.
    decision = profile.pick(RoutingRequest("a", ""), fleet(4, 0))
    assert (decision.url, decision.adapter_reason) == (R2, "capped")


def test_base_model_requests_are_not_adapter_decisions() -> None:
    profile, _ = policy(placement())
    decision = profile.pick(RoutingRequest("base", ""), fleet(2, 0, 1))
    assert (decision.url, decision.adapter_reason) == (R2, None)


def test_unknown_slots_and_the_only_candidate() -> None:
    profile, _ = policy(placement(slots=None))
    decision = profile.pick(RoutingRequest("a", ""), fleet(0, 0))
    assert decision.adapter_reason == "unknown_state"
    only = profile.pick(RoutingRequest("b", ""), fleet(0))
    assert (only.reason, only.adapter_reason) == ("only_candidate", "unknown_state")


def test_the_traffic_bound_moves_a_hot_adapter_at_light_load() -> None:
    # One request at a time: in-flight counts are all 0, so only the share of recent decisions balances.
    where = placement()
    profile, _ = policy(where, traffic_factor=1.2)
    chosen = []
    for _ in range(40):
        decision = profile.pick(RoutingRequest("a", ""), fleet(0, 0))
        where.sent(decision.url, "a")
        where.done(decision.url, "a")
        chosen.append(decision.url)
    assert chosen[:2] == [chosen[0]] * 2  # it stays where it was loaded at first
    # Then the other replica loads it too, and they share it (the bound lets one run 5 decisions ahead).
    assert min(chosen.count(R1), chosen.count(R2)) >= len(chosen) / 4
    assert decision.adapter_reason in ("loaded", "capped")


def test_each_tier_and_its_nudge_exactly() -> None:
    # The nudge (< the gap between tiers) is the demand the placement would lose, so it is computed
    # here from the placement's own decayed counts.
    where = placement()
    scorer = Adapter()
    scorer.attach(where)
    where.sent(R1, "a")
    where.sent(R1, "a")
    where.done(R1, "a")
    where.done(R1, "a")  # R1: a idle, one slot free
    assert scorer.tier(R1, "a", "base") == (LOADED, 0.0)
    assert scorer.tier(R1, "b", "base") == pytest.approx((FREE_SLOT, NUDGE / (1.0 + where.demand("a"))))
    assert where.demand("a") > 1.0  # the nudge sees the demand, not a count of adapters
    assert scorer.tier(R2, "b", "base") == (FREE_SLOT, NUDGE)  # nothing known of R2: every slot free
    where.sent(R3, "b")
    where.sent(R3, "c")
    assert scorer.tier(R3, "d", "base") == (BUSY, 0.0)  # b and c in flight in both slots
    where.done(R3, "b")
    where.done(R3, "c")  # the least recently used idle adapter, b, would go
    assert scorer.tier(R3, "d", "base") == pytest.approx((EVICT_IDLE, NUDGE / (1.0 + where.demand("b"))))
    assert where.demand("b") != where.demand("c") and where.demand("b") > 0.5
    assert scorer.tier(R1, "a", "base")[0] == LOADED


def test_the_victim_is_the_least_recently_used_adapter_with_nothing_in_flight() -> None:
    where = placement()
    scorer = Adapter()
    scorer.attach(where)
    where.sent(R1, "a")
    where.sent(R1, "a")
    where.done(R1, "a")  # a: least recently used, but one request still in flight
    where.sent(R1, "b")
    where.done(R1, "b")  # b: idle
    assert where.demand("a") > where.demand("b") > 0
    assert scorer.tier(R1, "c", "base") == pytest.approx((EVICT_IDLE, NUDGE / (1.0 + where.demand("b"))))


def test_a_replica_batching_as_many_adapters_as_it_has_slots_is_busy_even_with_an_idle_one_resident() -> None:
    # a is still running although the model evicted it (c pushed it out): vLLM runs a and c, its two
    # slots; a request for d would wait there, idle b or not.
    where = placement()
    scorer = Adapter()
    scorer.attach(where)
    where.sent(R1, "a")
    where.sent(R1, "b")
    where.done(R1, "b")
    where.sent(R1, "c")
    replica = where.replica(R1)
    assert replica is not None and list(replica.resident) == ["b", "c"] and replica.busy() == 2
    assert scorer.tier(R1, "d", "base") == (BUSY, 0.0)


def test_the_engines_own_slot_count_wins_over_the_catalogs_and_unknown_slots_have_no_nudge() -> None:
    where = placement(slots=2)
    scorer = Adapter()
    scorer.attach(where)
    where.observe_lora_info(R1, 1, [])  # the engine says one slot (the catalog two)
    where.sent(R1, "a")
    where.done(R1, "a")
    assert scorer.tier(R1, "b", "base")[0] == EVICT_IDLE
    unknown = Adapter()
    unknown.attach(placement(slots=None))
    assert unknown.tier(R1, "a", "base") == (UNKNOWN, 0.0)


def test_where_no_replica_holds_it_or_has_a_free_slot_the_reason_is_least_loaded() -> None:
    where = placement()
    profile, _ = policy(where)
    for url in (R1, R2):
        for name in ("b", "c"):
            where.sent(url, name)
            where.done(url, name)  # both replicas full of idle adapters: a load evicts one anywhere
    decision = profile.pick(RoutingRequest("a", ""), fleet(0, 1))
    assert (decision.url, decision.reason, decision.adapter_reason) == (R1, "least_loaded", "least_loaded")


def test_a_profile_built_without_a_placement_routes_on_an_empty_record() -> None:
    # Benchmarks and tools build profiles without the gateway's record: no name is an adapter, load decides.
    d = make_policy("adapter_affinity").pick(RoutingRequest("a", ""), fleet(1, 0))
    assert (d.url, d.reason, d.adapter_reason) == (R2, "least_load", None)
