"""What the scheduler hands the profiles besides the prompt: the token ids the router fetched and the
request's ``cache_salt`` (vLLM mixes it into the first block's hash, so ``precise_prefix`` must see it),
and whether a route wants token ids at all (only with KV events)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from inferstack.config import ProfileSpec, Routing, Settings
from inferstack.metrics.gateway import GatewayMetrics
from inferstack.scheduling import Scheduler
from inferstack.scheduling.scheduler import OVERRIDE_HEADER


def scheduler(**routing: object) -> Scheduler:
    settings = Settings(upstreams=["http://127.0.0.1:9"], routing=Routing(**routing))
    return Scheduler(settings, GatewayMetrics(CollectorRegistry()))


def test_token_ids_and_a_string_cache_salt_reach_the_routing_request() -> None:
    s = scheduler()
    route = s.route("m", {"prompt": "hi", "cache_salt": "tenant-7"}, "completions", {})
    s.give_tokens(route, [1, 2, 3], {"prompt": "hi", "cache_salt": "tenant-7"})
    assert (route.request.token_ids, route.request.cache_salt) == ((1, 2, 3), "tenant-7")
    assert (route.request.model, route.request.prompt) == ("m", "hi")  # the rest of the request is kept


def test_a_cache_salt_that_is_not_a_string_is_none_and_no_tokens_change_nothing() -> None:
    s = scheduler()
    route = s.route("m", {"prompt": "hi"}, "completions", {})
    s.give_tokens(route, [4], {"cache_salt": 7})
    assert (route.request.token_ids, route.request.cache_salt) == ((4,), None)
    before = route.request
    s.give_tokens(route, None, {"cache_salt": "tenant-7"})  # /tokenize failed: route on what is known
    assert route.request is before


def test_without_kv_events_no_route_wants_token_ids_even_with_a_profile_that_reads_them() -> None:
    s = scheduler(profiles={"mine": ProfileSpec(scorers={"precise_prefix": 1.0})})
    route = s.route("m", {"prompt": "hi"}, "completions", {OVERRIDE_HEADER: "mine"})
    assert not s.wants_tokens(route)
