"""Each scorer's scores: in 0..1 as the framework weighs them, with the values its docstring promises."""

from __future__ import annotations

from inferstack.config import ProfileSpec
from inferstack.scheduling import CycleState, EndpointLoad, RoutingRequest, make_policy, plugin_classes, prefix_chain
from inferstack.scheduling.plugins.prefix import Prefix


def state(candidates: list[EndpointLoad], request: RoutingRequest | None = None) -> CycleState:
    loads = {c.url: float(c.in_flight) for c in candidates}
    return CycleState(request or RoutingRequest("m", "hello"), candidates, loads)


def scores(name: str, candidates: list[EndpointLoad], request: RoutingRequest | None = None) -> dict[str, float]:
    scorer = plugin_classes()[name]()
    result: dict[str, float] = scorer.score(state(candidates, request), candidates)
    assert all(0.0 <= s <= 1.0 for s in result.values()), (name, result)
    return result


def test_kv_cache_scores_free_cache_and_half_while_unknown() -> None:
    fleet = [EndpointLoad("http://a", 0, kv_cache_usage=0.2), EndpointLoad("http://b", 0, kv_cache_usage=0.9)]
    fleet.append(EndpointLoad("http://c", 0, kv_cache_usage=None))
    assert scores("kv_cache", fleet) == {"http://a": 0.8, "http://b": 1.0 - 0.9, "http://c": 0.5}
    # In a profile of its own: emptier first, an unknown replica between a nearly empty and a nearly full one.
    profile = make_policy("kv", {"kv": ProfileSpec(scorers={"kv_cache": 1.0})})
    decision = profile.pick(RoutingRequest("m", "x"), fleet)
    assert (decision.url, decision.reason) == ("http://a", "max_score")  # one best score: no tie to break
    assert profile.pick(RoutingRequest("m", "x"), fleet[1:]).url == "http://c"


def test_load_is_min_max_normalised_and_abstains_on_equal_loads() -> None:
    fleet = [EndpointLoad("http://a", 2), EndpointLoad("http://b", 4), EndpointLoad("http://c", 6)]
    assert scores("load", fleet) == {"http://a": 1.0, "http://b": 0.5, "http://c": 0.0}
    assert scores("load", [EndpointLoad("http://a", 3), EndpointLoad("http://b", 3)]) == {
        "http://a": 1.0,
        "http://b": 1.0,
    }


def test_session_and_prefix_abstain_without_a_key_or_a_full_block() -> None:
    fleet = [EndpointLoad("http://a", 0), EndpointLoad("http://b", 1)]
    assert scores("session", fleet) == {"http://a": 0.0, "http://b": 0.0}
    assert scores("prefix", fleet, RoutingRequest("m", "shorter than a block")) == {"http://a": 0.0, "http://b": 0.0}
    keyed = scores("session", fleet, RoutingRequest("m", "x", session_key="alice"))
    assert sorted(keyed.values()) == [0.5, 1.0]  # the favourite 1, the next (n - rank) / n


def test_a_full_prefix_match_outscores_every_partial_one() -> None:
    # (matched + home) / (blocks + 1), home in [0, 1): a replica holding the whole chain scores at
    # least blocks / (blocks + 1), one holding nothing less than 1 / (blocks + 1).
    fleet = [EndpointLoad(f"http://r{i}", 0) for i in range(4)]
    request = RoutingRequest("m", "a shared system prompt, long enough for several blocks " * 20)
    scorer = Prefix()
    chain = prefix_chain("m", request.prompt, scorer.block_chars, scorer.max_blocks)
    assert len(chain) >= 4
    scorer.index.record(chain, "http://r1")
    scorer.index.record(chain[:2], "http://r2")
    result = scorer.score(state(fleet, request), fleet)
    assert all(0.0 <= v < 1.0 for v in result.values()), result
    blocks = len(chain)
    assert blocks / (blocks + 1) <= result["http://r1"] < 1.0
    assert 2 / (blocks + 1) <= result["http://r2"] < 3 / (blocks + 1)
    assert result["http://r0"] < 1 / (blocks + 1) and result["http://r3"] < 1 / (blocks + 1)


def test_max_score_breaks_a_tie_by_load_then_by_free_kv_cache() -> None:
    fleet = [
        EndpointLoad("http://a", 1, kv_cache_usage=0.1),
        EndpointLoad("http://b", 0, kv_cache_usage=0.7),
        EndpointLoad("http://c", 0, kv_cache_usage=0.3),
    ]
    picker = plugin_classes()["max_score"]()
    for _ in range(3):  # the rotation only breaks exact ties
        chosen, reason = picker.pick(state(fleet), fleet, dict.fromkeys((c.url for c in fleet), 0.5))
        assert (chosen.url, reason) == ("http://c", "least_load")


def test_unknown_kv_usage_counts_half_full_in_the_scorer_and_the_tie_break_alike() -> None:
    # One rule (scheduling.load.kv_usage): a replica without a fresh scrape is neither the emptiest
    # (it would win every tie while its scrapes fail) nor the fullest.
    unknown = EndpointLoad("http://u", 0, kv_cache_usage=None)
    for usage, winner in ((0.3, "http://k"), (0.7, "http://u")):
        fleet = [unknown, EndpointLoad("http://k", 0, kv_cache_usage=usage)]
        picker = plugin_classes()["max_score"]()
        chosen, reason = picker.pick(state(fleet), fleet, dict.fromkeys((c.url for c in fleet), 0.5))
        assert (chosen.url, reason) == (winner, "least_load")
        kv = scores("kv_cache", fleet)
        assert max(kv, key=lambda url: kv[url]) == winner
