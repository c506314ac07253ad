"""prefix_affinity: prefixes stick to a replica, the longest match wins, load stays bounded."""

from __future__ import annotations

import math
import random
from collections import Counter

from inferstack.scheduling import EndpointLoad, PrefixIndex, Profile, RoutingRequest, make_policy, prefix_chain
from inferstack.scheduling.plugins.prefix import Prefix

URLS = [f"http://r{i}" for i in range(8)]


def idle(urls: list[str] = URLS) -> list[EndpointLoad]:
    return [EndpointLoad(u, 0) for u in urls]


def index_of(profile: Profile) -> PrefixIndex:
    scorer = profile.plugin("prefix")
    assert isinstance(scorer, Prefix)
    return scorer.index


def system_prompt(tenant: int) -> str:
    return f"[tenant {tenant}] You are the assistant of tenant {tenant}. " * 40  # ~2k chars


def req(tenant: int, question: str, model: str = "m") -> RoutingRequest:
    return RoutingRequest(model, system_prompt(tenant) + question)


def test_first_request_misses_then_the_prefix_sticks() -> None:
    p = make_policy("prefix_affinity")
    first = p.pick(req(1, "first question"), idle())
    assert first.reason == "prefix_miss"
    for q in ("second", "third question, rather longer " * 3):
        d = p.pick(req(1, q), idle())
        assert (d.url, d.reason) == (first.url, "prefix_hit")
        assert d.prefix_blocks >= len(system_prompt(1)) // 256


def test_a_new_prefix_has_a_stable_home_across_gateway_processes() -> None:
    # Two policies share no state, like two gateway replicas: they agree on where a prefix lives.
    a, b = make_policy("prefix_affinity"), make_policy("prefix_affinity")
    for t in range(20):
        assert a.pick(req(t, "q"), idle()).url == b.pick(req(t, "q"), idle()).url


def test_tenants_spread_over_replicas() -> None:
    p = make_policy("prefix_affinity")
    homes = Counter(p.pick(req(t, "q"), idle()).url for t in range(64))
    assert len(homes) == 8


def test_longest_match_wins() -> None:
    p = make_policy("prefix_affinity", load_factor=100)
    conversation = system_prompt(7) + "turn one " * 100
    index_of(p).record(prefix_chain("m", system_prompt(7), 256, 128), "http://r1")
    index_of(p).record(prefix_chain("m", conversation, 256, 128), "http://r2")
    d = p.pick(RoutingRequest("m", conversation + "turn two"), idle())
    assert (d.url, d.reason) == ("http://r2", "prefix_hit")


def test_the_model_is_part_of_the_prefix() -> None:
    p = make_policy("prefix_affinity")
    p.pick(req(3, "q", model="a"), idle())
    assert p.pick(req(3, "q", model="a"), idle()).reason == "prefix_hit"
    assert p.pick(req(3, "q", model="b"), idle()).reason == "prefix_miss"


def test_a_loaded_home_spills_with_load_bound() -> None:
    p = make_policy("prefix_affinity", load_factor=1.25)
    home = p.pick(req(1, "q"), idle()).url
    loads = [EndpointLoad(u, 6 if u == home else 2) for u in URLS]  # cap = ceil(1.25 * 21 / 8) = 4
    d = p.pick(req(1, "q2"), loads)
    assert d.url != home and d.reason == "load_bound"
    # The spill replica learned the prefix too: with the home still loaded, it is the next hit.
    again = p.pick(req(1, "q3"), loads)
    assert again.url == d.url


def test_load_never_exceeds_the_bound_under_a_skewed_workload() -> None:
    """One hot tenant sends most traffic; every replica stays at or under max(ceil(c x mean), ceil(mean + 1))
    (the default slack of one request), and at larger counts under c x mean."""
    c = 1.25
    p = make_policy("prefix_affinity", load_factor=c)
    rng = random.Random(1)
    in_flight = dict.fromkeys(URLS, 0)
    open_requests: list[str] = []
    worst_ratio = 0.0
    for i in range(3000):
        if open_requests and rng.random() < 0.5:
            in_flight[open_requests.pop(rng.randrange(len(open_requests)))] -= 1
        tenant = 0 if rng.random() < 0.7 else rng.randrange(1, 64)
        cands = [EndpointLoad(u, n) for u, n in in_flight.items()]
        url = p.pick(req(tenant, f"q{i}"), cands).url
        in_flight[url] += 1
        open_requests.append(url)
        total = sum(in_flight.values())
        assert in_flight[url] <= max(-(-c * total // len(URLS)), math.ceil(total / len(URLS) + 1))
        if total >= 40:
            worst_ratio = max(worst_ratio, max(in_flight.values()) / (total / len(URLS)))
    assert worst_ratio <= c + 0.2


def test_retry_excludes_the_failed_replica() -> None:
    p = make_policy("prefix_affinity")
    first = p.pick(req(2, "q"), idle()).url
    retry = p.pick(req(2, "q"), idle(), exclude=frozenset({first}))
    assert retry.url != first


def test_short_prompts_fall_back_to_least_load() -> None:
    p = make_policy("prefix_affinity")
    loads = [EndpointLoad(u, 5) for u in URLS[:-1]] + [EndpointLoad(URLS[-1], 1)]
    d = p.pick(RoutingRequest("m", "hi"), loads)
    assert (d.url, d.reason) == (URLS[-1], "least_load")
    assert p.pick(RoutingRequest("m", "hi"), idle(URLS[:1])).reason == "only_candidate"


def test_index_memory_is_bounded() -> None:
    p = make_policy("prefix_affinity", index_capacity=500)
    for t in range(200):
        p.pick(req(t, "q"), idle())
    assert len(index_of(p)) == 500
    # The most recent tenants are still known, the oldest forgotten.
    assert p.pick(req(199, "again"), idle()).reason == "prefix_hit"
    assert p.pick(req(0, "again"), idle()).reason == "prefix_miss"


def test_index_keeps_few_replicas_per_block_and_matches_contiguous_prefixes() -> None:
    index = PrefixIndex(capacity=100, replicas_per_block=2)
    chain = prefix_chain("m", "x" * 256 * 4, 256, 128)
    for url in ("a", "b", "c"):
        index.record(chain, url)
    assert index.match(chain, ["a", "b", "c"]) == {"a": 0, "b": 4, "c": 4}
    index.record(chain[:2], "a")
    assert index.match(chain, ["a"]) == {"a": 2}
    assert prefix_chain("m", "x" * 255, 256, 128) == []
    assert len(prefix_chain("m", "x" * 256 * 10, 256, 3)) == 3


def test_the_only_candidate_is_not_believed_to_hold_any_of_the_prompt_it_was_not_scored_for() -> None:
    # With one replica nothing is scored: the access log's prefix_blocks is 0, not a guess.
    policy = make_policy("prefix_affinity")
    first = policy.pick(req(1, "q1"), idle(URLS[:1]))
    assert (first.reason, first.prefix_blocks) == ("only_candidate", 0)
    # The decision is still learned: with a second replica, the first holds the prefix.
    again = policy.pick(req(1, "q2"), idle(URLS[:2]))
    assert again.url == URLS[0] and again.prefix_blocks > 0
