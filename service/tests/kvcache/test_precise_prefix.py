"""The ``precise_prefix`` profile: exact matches from the KV index, load and the bound, and the fallback."""

from __future__ import annotations

import time

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from inferstack.config import BUILTIN_PROFILES, KVEvents, ProfileSpec, Settings
from inferstack.errors import InvalidRequestError
from inferstack.kvcache.blocks import prompt_block_hashes
from inferstack.kvcache.index import KVIndex
from inferstack.kvcache.service import KVRouting
from inferstack.kvcache.wire import decode
from inferstack.metrics.gateway import GatewayMetrics
from inferstack.scheduling import EndpointLoad, Profile, RoutingRequest, Scheduler, make_policy
from inferstack.scheduling.plugins.precise_prefix import PrecisePrefix
from inferstack.scheduling.scheduler import OVERRIDE_HEADER
from inferstack.upstream.endpoint import Endpoint

from .events import frames, stored

A, B, C = "http://a:8000", "http://b:8000", "http://c:8000"
TOKENS = tuple(range(1000, 1000 + 64))  # 4 blocks of 16


def profile(index: KVIndex | None, now: list[float]) -> Profile:
    p = make_policy("precise_prefix", BUILTIN_PROFILES)
    scorer = p.plugin("precise_prefix")
    assert isinstance(scorer, PrecisePrefix)
    if index is not None:
        scorer.attach(index, clock=lambda: now[0])
    return p


def holding(index: KVIndex, url: str, blocks: int, seq: int = 0, seed: str | None = None) -> None:
    hashes = prompt_block_hashes(TOKENS, 16, **({} if seed is None else {"seed": seed}))[:blocks]
    index.apply(url, decode(frames(seq, stored(hashes, list(TOKENS[: 16 * blocks]), 16))), 0.0, 0.0)


def req(tokens: tuple[int, ...] | None = TOKENS) -> RoutingRequest:
    return RoutingRequest("m", "p" * 600, token_ids=tokens)


def idle(*urls: str) -> list[EndpointLoad]:
    return [EndpointLoad(u, 0) for u in urls]


def test_the_replica_holding_the_longest_prefix_wins() -> None:
    index, now = KVIndex(), [0.0]
    holding(index, A, 1)
    holding(index, B, 3)
    holding(index, C, 0)
    d = profile(index, now).pick(req(), idle(A, B, C))
    assert (d.url, d.reason, d.prefix_blocks) == (B, "prefix_hit", 3)


def test_the_bound_keeps_a_hot_replica_from_taking_everything() -> None:
    index, now = KVIndex(), [0.0]
    holding(index, A, 4)
    holding(index, B, 0)
    d = profile(index, now).pick(req(), [EndpointLoad(A, 6), EndpointLoad(B, 0)])
    assert (d.url, d.reason) == (B, "load_bound")


def test_a_quarter_of_the_prompt_cached_outweighs_a_request_more_in_flight() -> None:
    # A holds the whole prompt (a conversation's history), B its first three blocks (the system
    # prompt). At 3:1:1 the load scorer's full spread (1) beat 3 x 1/4, and the turn re-prefilled its
    # history on B; at 10:1:1 the history wins.
    index, now = KVIndex(), [0.0]
    holding(index, A, 4)
    holding(index, B, 3)
    holding(index, C, 0)
    d = profile(index, now).pick(req(), [EndpointLoad(A, 2), EndpointLoad(B, 1), EndpointLoad(C, 1)])
    assert (d.url, d.reason, d.prefix_blocks) == (A, "prefix_hit", 4)


def test_without_tokens_or_fresh_events_it_falls_back_to_the_approximate_scorer() -> None:
    index, now = KVIndex(), [0.0]
    p = profile(index, now)
    assert p.pick(req(None), idle(A, B)).reason == "no_tokens"
    index.join(A)
    assert p.pick(req(), idle(A, B)).reason == "no_events"  # joined, but no block size reported yet
    assert profile(None, now).pick(req(), idle(A, B)).reason == "no_events"  # no index attached
    holding(index, A, 2)
    assert p.pick(req(None), idle(A, B)).reason == "no_tokens"  # a fresh view is no use without token ids


def test_a_replica_sent_new_blocks_goes_stale_if_its_events_never_come() -> None:
    index, now = KVIndex(stale_after=5), [0.0]
    holding(index, A, 1)
    p = profile(index, now)
    assert p.pick(req(), idle(A)).reason == "only_candidate"  # A now owes events for blocks 2..4
    now[0] = 6.0
    assert p.pick(req(), idle(A, B)).reason == "no_events"
    holding(index, A, 4, seq=1)  # the events arrive
    assert p.pick(req(), idle(A, B)).reason == "prefix_hit"


def test_no_match_anywhere_is_a_miss_on_the_least_loaded() -> None:
    index, now = KVIndex(), [0.0]
    holding(index, A, 0)
    holding(index, B, 0)
    index.apply(A, decode(frames(1, stored([12345], [0] * 16, 16))), 0.0, 0.0)
    d = profile(index, now).pick(req(), [EndpointLoad(A, 2), EndpointLoad(B, 0)])
    assert (d.url, d.reason) == (B, "prefix_miss")


def test_a_cache_salt_separates_what_the_engine_holds() -> None:
    # vLLM mixes cache_salt into the first block's hash: blocks stored without a salt are no hit for a
    # salted request (another tenant's isolation), and blocks stored with it are.
    index, now = KVIndex(), [0.0]
    holding(index, A, 3)
    salted = prompt_block_hashes(TOKENS, 16, cache_salt="tenant-b")[:2]
    index.apply(B, decode(frames(0, stored(salted, list(TOKENS[:32]), 16))), 0.0, 0.0)
    p = profile(index, now)
    d = p.pick(RoutingRequest("m", "p" * 600, token_ids=TOKENS, cache_salt="tenant-b"), idle(A, B))
    assert (d.url, d.reason, d.prefix_blocks) == (B, "prefix_hit", 2)
    d = p.pick(req(), idle(A, B))
    assert (d.url, d.reason, d.prefix_blocks) == (A, "prefix_hit", 3)


def test_without_events_it_decides_as_the_prefix_scorer_built_with_the_same_knobs() -> None:
    # The fallback is the approximate scorer with the routing knobs the gateway passes; small ones here,
    # so that the chain length, the home block and the index's LRU bound all show in the decisions.
    knobs = {"block_chars": 16, "max_blocks": 3, "home_blocks": 2, "index_capacity": 16}
    precise = make_policy("precise_prefix", **knobs)  # no index attached: always the fallback
    spec = BUILTIN_PROFILES["precise_prefix"]
    scorers = {("prefix" if name == "precise_prefix" else name): w for name, w in spec.scorers.items()}
    approximate = make_policy("approx", {"approx": ProfileSpec(filters=spec.filters, scorers=scorers)}, **knobs)
    prompts = [f"{head:<32}{tail:<16}" for head in ("system A", "system B", "system C") for tail in "xyzw"]
    urls = (A, B, C)
    for i in range(60):  # each prompt twice in a row (a whole match), and again after evictions
        prompt = prompts[(i // 2 * 7) % len(prompts)]
        loads = [EndpointLoad(u, (i + n) % 3) for n, u in enumerate(urls)]
        d = precise.pick(RoutingRequest("m", prompt), loads)
        e = approximate.pick(RoutingRequest("m", prompt), loads)
        assert (d.url, d.prefix_blocks, d.reason) == (e.url, e.prefix_blocks, "no_events"), i


def test_a_replica_that_already_holds_the_whole_prompt_owes_no_events() -> None:
    # A request whose blocks are all held makes the engine store nothing new: no events are owed, so
    # the replica's view stays fresh however long the next event takes (here a one-block prompt).
    index, now = KVIndex(stale_after=5), [0.0]
    holding(index, A, 1)
    p = profile(index, now)
    one_block = req(TOKENS[:16])
    assert p.pick(one_block, idle(A, B)).reason == "prefix_hit"
    now[0] = 6.0
    d = p.pick(one_block, idle(A, B))
    assert (d.url, d.reason, d.prefix_blocks) == (A, "prefix_hit", 1)


def test_a_prompt_shorter_than_one_block_owes_no_events() -> None:
    # No full block, nothing for the engine to store: owing events would turn A's view stale after
    # stale_after seconds of silence and send a later long prompt to the fallback.
    index, now = KVIndex(stale_after=5), [0.0]
    holding(index, A, 4)
    p = profile(index, now)
    p.pick(req(TOKENS[:10]), idle(A))
    now[0] = 6.0
    d = p.pick(req(), idle(A, B))
    assert (d.url, d.reason, d.prefix_blocks) == (A, "prefix_hit", 4)


def test_a_replica_the_index_knows_nothing_of_holds_nothing() -> None:
    index, now = KVIndex(), [0.0]
    holding(index, A, 0)  # A has reported events (none of this prompt); B never has
    d = profile(index, now).pick(req(), [EndpointLoad(A, 3), EndpointLoad(B, 0)])
    assert (d.url, d.reason, d.prefix_blocks) == (B, "prefix_miss", 0)


def test_the_hash_seed_and_block_limit_given_at_attach_decide_the_hashes() -> None:
    index, now = KVIndex(), [0.0]
    holding(index, A, 4, seed="fleet-seed")  # engines run with this PYTHONHASHSEED-like seed
    holding(index, B, 4)  # the default seed's hashes: no match for a scorer told the fleet's seed
    p = make_policy("precise_prefix", BUILTIN_PROFILES)
    scorer = p.plugin("precise_prefix")
    assert isinstance(scorer, PrecisePrefix)
    scorer.attach(index, hash_seed="fleet-seed", max_blocks=2, clock=lambda: now[0])
    d = p.pick(req(), idle(A, B))
    assert (d.url, d.reason, d.prefix_blocks) == (A, "prefix_hit", 2)  # only the first two blocks hashed


def test_a_partial_match_counts_for_its_share_of_the_prompt() -> None:
    # Weights 3 (precise_prefix) and 1 (load), set here: a busier replica holding a quarter of the prompt
    # loses to an idle one (0.75 < 1), holding half of it wins (1.5 > 1).
    spec = ProfileSpec(filters=("bounded_load",), scorers={"precise_prefix": 3.0, "load": 1.0})
    for blocks, winner, reason in ((1, B, "load_bound"), (2, A, "prefix_hit")):
        index = KVIndex()
        holding(index, A, blocks)
        holding(index, B, 0)
        p = make_policy("weighed", {"weighed": spec})
        scorer = p.plugin("precise_prefix")
        assert isinstance(scorer, PrecisePrefix)
        scorer.attach(index, clock=lambda: 0.0)
        d = p.pick(req(), [EndpointLoad(A, 1), EndpointLoad(B, 0)])
        assert (d.url, d.reason) == (winner, reason), blocks


async def test_the_scheduler_gives_the_scorer_the_kv_events_hash_seed_and_block_limit() -> None:
    # As above, through the Scheduler: kv_events.hash_seed and kv_events.max_blocks, not the scorer's defaults.
    settings = KVEvents(enabled=True, hash_seed="fleet-seed", max_blocks=2)
    async with aiohttp.ClientSession() as session:
        kv = KVRouting(settings, session, CollectorRegistry())
        s = Scheduler(Settings(upstreams=[A, B], kv_events=settings), GatewayMetrics(CollectorRegistry()), kv=kv)
        for url, hashes in (
            (A, prompt_block_hashes(TOKENS, 16, seed="fleet-seed")),
            (B, prompt_block_hashes(TOKENS, 16)),
        ):
            kv.index.apply(url, decode(frames(0, stored(hashes, list(TOKENS), 16))), time.monotonic(), time.time())
        route = s.route("m", {"prompt": "p" * 600}, "completions", {OVERRIDE_HEADER: "precise_prefix"})
        s.give_tokens(route, TOKENS, {})
        assert s.pick(route, [Endpoint(B), Endpoint(A)]).url == A
        assert (route.reason, route.prefix_blocks) == ("prefix_hit", 2)  # only the first two blocks hashed
        await kv.close()


def test_without_kv_events_the_precise_profile_is_not_offered() -> None:
    s = Scheduler(Settings(upstreams=[A]), GatewayMetrics(CollectorRegistry()))
    with pytest.raises(InvalidRequestError, match="Unknown routing policy 'precise_prefix'"):
        s.route("m", {"prompt": "hi"}, "completions", {OVERRIDE_HEADER: "precise_prefix"})
