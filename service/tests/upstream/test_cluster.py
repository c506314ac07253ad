"""The cluster: membership, active health checks against real HTTP servers, the replica gauges, and
what an ejection does (its log line, its metric, the waiters it wakes)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from inferstack.bounds import UNLISTED_MODELS
from inferstack.config import OutlierDetection, Settings
from inferstack.metrics.gateway import GatewayMetrics
from inferstack.upstream.adapters import AdapterPlacement
from inferstack.upstream.cluster import Cluster
from inferstack.upstream.endpoint import Endpoint

from ..waiting import until


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Cluster, GatewayMetrics]]:
    settings = Settings(
        upstreams=[],
        models=["declared"],
        outlier=OutlierDetection(consecutive_failures=2, base_ejection=30, max_ejected_percent=100),
    )
    metrics = GatewayMetrics()
    async with aiohttp.ClientSession() as session:
        c = Cluster(settings, session, metrics)
        yield c, metrics
        await c.close()


def replicas(metrics: GatewayMetrics, model: str, state: str) -> float | None:
    return metrics.registry.get_sample_value("inferstack_upstream_replicas", {"model": model, "state": state})


async def test_an_ejection_is_logged_counted_per_model_and_wakes_waiters(
    cluster: tuple[Cluster, GatewayMetrics], caplog: pytest.LogCaptureFixture
) -> None:
    c, metrics = cluster
    a = c.endpoints["http://a"] = Endpoint("http://a", frozenset({"m", "n"}), healthy=True)
    c.endpoints["http://b"] = Endpoint("http://b", frozenset({"m"}), healthy=True)
    c.record_failure(a, "m")
    changed = c.changed()
    assert not changed.done()
    with caplog.at_level(logging.WARNING, logger="inferstack.upstream"):
        c.record_failure(a, "m")
    assert changed.done()  # a request held for capacity looks again
    assert [e.url for e in c.candidates("m")] == ["http://b"]
    for model in ("m", "n"):
        assert metrics.registry.get_sample_value("inferstack_upstream_ejections_total", {"model": model}) == 1
    assert (replicas(metrics, "m", "ready"), replicas(metrics, "m", "ejected")) == (1, 1)
    assert (replicas(metrics, "n", "ready"), replicas(metrics, "n", "ejected")) == (0, 1)
    (record,) = [r for r in caplog.records if r.name == "inferstack.upstream"]
    assert (record.levelno, record.getMessage()) == (logging.WARNING, "replica ejected")
    assert (record.__dict__["upstream"], record.__dict__["ejections"]) == ("http://a", 1)
    seconds = record.__dict__["seconds"]
    assert isinstance(seconds, float) and 29 <= seconds <= 30 and seconds == round(seconds, 1)


async def test_a_success_resets_the_failure_count_only_through_the_cluster(
    cluster: tuple[Cluster, GatewayMetrics],
) -> None:
    c, _ = cluster
    a = c.endpoints["http://a"] = Endpoint("http://a", frozenset({"m"}), healthy=True)
    c.record_failure(a, "m")
    c.record_success(a)
    c.record_failure(a, "m")
    assert a.available(0) and a.ejections == 0  # one failure in a row, not two
    c.record_failure(a, "m")
    assert a.ejections == 1


async def test_the_replica_gauges_count_declared_models_and_skip_unhealthy_replicas(
    cluster: tuple[Cluster, GatewayMetrics],
) -> None:
    c, metrics = cluster
    c.endpoints["http://a"] = Endpoint("http://a", frozenset({"m"}), healthy=True)
    c.endpoints["http://b"] = Endpoint("http://b", frozenset({"m"}), healthy=False)
    c.endpoints["http://c"] = Endpoint("http://c", frozenset({"m"}), healthy=True, ejected_until=1e12)
    for url in ("http://d", "http://e"):  # counted, not only flagged: three ready in all, two ejected
        c.endpoints[url] = Endpoint(url, frozenset({"m"}), healthy=True, ejected_until=1e12 if url == "http://e" else 0)
    c.endpoints["http://f"] = Endpoint("http://f", frozenset({"m"}), healthy=True)
    c.set_urls([*c.endpoints])  # no change of membership: the gauges are published
    assert (replicas(metrics, "m", "ready"), replicas(metrics, "m", "ejected")) == (3, 2)
    # A declared model no replica serves yet has its series, at zero (the autoscaler reads them).
    assert (replicas(metrics, "declared", "ready"), replicas(metrics, "declared", "ejected")) == (0, 0)


class Replica:
    """A real HTTP server standing in for an engine's /health and /v1/models, changed between checks."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.hang = asyncio.Event()
        self.hang.set()  # cleared: /health and /v1/models do not answer
        self.hang_models = asyncio.Event()
        self.hang_models.set()  # cleared: /health answers, /v1/models does not
        self.raw: bytes | None = None  # /v1/models answers these bytes instead
        self.checks = 0
        self.health = 200
        self.models_status = 200
        self.models: Any = {"object": "list", "data": [{"id": "m", "root": "/weights/m"}]}

    async def serve(self) -> AsyncIterator[str]:
        app = web.Application()

        async def health(_: web.Request) -> web.Response:
            self.checks += 1
            await self.hang.wait()
            return web.Response(status=self.health)

        async def models(_: web.Request) -> web.Response:
            await self.hang.wait()
            await self.hang_models.wait()
            if self.raw is not None:
                return web.Response(body=self.raw, content_type="application/json")
            return web.json_response(self.models, status=self.models_status)

        app.router.add_get("/health", health)
        app.router.add_get("/v1/models", models)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}"
        finally:
            await runner.cleanup()


@pytest.fixture
async def replica() -> AsyncIterator[tuple[Replica, str]]:
    r = Replica()
    async for url in r.serve():
        yield r, url


async def test_a_check_learns_the_models_and_cards_and_an_unhealthy_answer_takes_the_replica_out(
    cluster: tuple[Cluster, GatewayMetrics], replica: tuple[Replica, str]
) -> None:
    c, metrics = cluster
    server, url = replica
    e = c.endpoints[url] = Endpoint(url)  # no health-check task: the test checks by hand
    await c.check(e)
    assert e.healthy and e.models == {"m"} and c.candidates("m") == [e] and c.ready()
    assert "m" in c.known_models and c.revision("m") == "/weights/m" and c.revision("other") == ""
    assert c.model_cards() == [{"id": "m", "root": "/weights/m"}]
    assert replicas(metrics, "m", "ready") == 1
    for broken in (
        {"health": 503},
        {"models_status": 500},
        {"models": {"data": []}},
        {"models": {"data": "x"}},
        {"raw": b"not json"},
    ):
        changed = c.changed()
        for name, value in broken.items():
            setattr(server, name, value)
        await c.check(e)
        assert not e.healthy and c.candidates("m") == [] and not c.ready(), broken
        assert changed.done() and replicas(metrics, "m", "ready") == 0, broken
        assert c.model_cards() == []  # an unavailable replica's cards are not listed
        server.reset()
        await c.check(e)
        assert e.healthy, broken


async def test_a_change_of_health_is_logged_with_the_replica_and_its_models(
    cluster: tuple[Cluster, GatewayMetrics], replica: tuple[Replica, str], caplog: pytest.LogCaptureFixture
) -> None:
    # Operators read when a replica came and went from these lines; a check that changes nothing logs none.
    c, _ = cluster
    server, url = replica
    e = c.endpoints[url] = Endpoint(url)
    with caplog.at_level(logging.INFO, logger="inferstack.upstream"):
        await c.check(e)
        await c.check(e)
        server.health = 503
        await c.check(e)
    lines = [
        (r.levelno, r.getMessage(), r.__dict__["upstream"], r.__dict__["models"])
        for r in caplog.records
        if r.name == "inferstack.upstream"
    ]
    assert lines == [(logging.INFO, "replica healthy", url, ["m"]), (logging.INFO, "replica unhealthy", url, ["m"])]


async def test_a_check_that_changes_nothing_wakes_nobody_and_a_new_model_does(
    cluster: tuple[Cluster, GatewayMetrics], replica: tuple[Replica, str]
) -> None:
    c, _ = cluster
    server, url = replica
    e = c.endpoints[url] = Endpoint(url)
    await c.check(e)
    changed = c.changed()
    await c.check(e)
    assert not changed.done()
    server.models = {"data": [{"id": "m"}, {"id": "n", "root": "/weights/n"}, {"no": "id"}]}
    await c.check(e)
    assert changed.done() and e.models == {"m", "n"} and {"m", "n"} <= c.known_models
    assert [card["id"] for card in c.model_cards()] == ["m", "n"]
    assert c.revision("m") == ""  # a card without a root: no revision, not a made-up one


async def test_a_replica_that_does_not_answer_its_check_in_time_is_unhealthy(replica: tuple[Replica, str]) -> None:
    server, url = replica
    settings = Settings(upstreams=[], health={"timeout": 0.2})
    async with aiohttp.ClientSession() as session:
        c = Cluster(settings, session, GatewayMetrics())
        e = c.endpoints[url] = Endpoint(url)
        await c.check(e)
        assert e.healthy
        for hang in (server.hang, server.hang_models):  # /health, then /v1/models after /health answered
            hang.clear()
            async with asyncio.timeout(5):  # health.timeout (0.2 s), not never
                await c.check(e)
            assert not e.healthy
            hang.set()
            await c.check(e)
            assert e.healthy
        await c.close()


@contextlib.asynccontextmanager
async def checking(interval: float) -> AsyncIterator[Cluster]:
    """A cluster of its own whose health checks run every ``interval`` seconds; closed after."""
    async with aiohttp.ClientSession() as session:
        c = Cluster(Settings(upstreams=[], health={"interval": interval}), session, GatewayMetrics())
        try:
            yield c
        finally:
            await c.close()


async def test_a_removed_replica_is_no_longer_checked(replica: tuple[Replica, str]) -> None:
    server, url = replica
    async with checking(interval=0.05) as c:
        c.set_urls([url])
        async with asyncio.timeout(5):
            while server.checks < 2:  # checked again and again while it is a member
                await asyncio.sleep(0.01)
        c.set_urls([])
        checks = server.checks
        await asyncio.sleep(0.3)  # six intervals: the time in which a leftover checker would check again
        assert server.checks <= checks + 1  # at most one sent before the removal, answered after it


async def test_a_removed_replica_s_checker_ends_at_once_not_after_its_interval(replica: tuple[Replica, str]) -> None:
    # Its loop would end by itself after its sleep (the test below), but an interval is 10 s or more
    # in production: the checker is cancelled when its replica leaves, not left to sleep it out.
    server, url = replica
    async with checking(interval=30) as c:
        c.set_urls([url])
        (checker,) = [t for t in asyncio.all_tasks() if t.get_name() == f"health {url}"]
        await until(lambda: c.candidates("m") != [], "the first check")  # then it sleeps for 30 s
        c.set_urls([])
        await until(checker.done, "the removed replica's checker to end", within=5)
        assert server.checks == 1


async def test_a_checker_that_outlived_its_replica_ends_by_itself(replica: tuple[Replica, str]) -> None:
    """Its cancel can be lost (inferstack/tasks.py: 23 in 1,000 against a replica that does not answer,
    bench/lost_cancel.py --loop cluster): the loop must not probe a departed replica forever."""
    _, url = replica
    settings = Settings(upstreams=[], health={"interval": 0.05})
    async with aiohttp.ClientSession() as session:
        c = Cluster(settings, session, GatewayMetrics())
        c.set_urls([url])
        left = c.endpoints[url]
        c.set_urls([])
        c.set_urls([url])  # back, as a new member: the old checker's replica is still gone
        outlived = asyncio.create_task(c._check_loop(left))  # the old checker, as if its cancel was lost
        async with asyncio.timeout(5):
            await outlived  # it ends: it does not loop
        assert c.endpoints[url] is not left
        await c.close()
        closed = asyncio.create_task(c._check_loop(c.endpoints[url]))
        async with asyncio.timeout(5):
            await closed  # a member's checker ends too once the cluster is closed


async def test_a_check_that_ends_after_its_replica_left_changes_nothing(
    cluster: tuple[Cluster, GatewayMetrics], replica: tuple[Replica, str]
) -> None:
    """A lost cancel lets a removed replica's probe finish: what it learnt must not come back (the
    known models, the adapter placement, whose ``forget`` ran at the removal)."""
    c, metrics = cluster
    placement = c.placement = AdapterPlacement(metrics=metrics)
    _, url = replica
    left = Endpoint(url)  # not a member (any more)
    before = set(c.known_models)
    await c.check(left)
    assert not left.healthy and left.models == frozenset()
    assert c.known_models == before and c.model_cards() == []
    assert placement.replica(url) is None


async def test_membership_follows_discovery_and_a_removed_replica_is_forgotten(
    cluster: tuple[Cluster, GatewayMetrics], replica: tuple[Replica, str]
) -> None:
    c, _ = cluster
    _, url = replica
    changed = c.changed()
    c.set_urls([url + "/"])  # the same replica, however discovery spells it
    assert list(c.endpoints) == [url] and changed.done()
    e = c.endpoints[url]
    # The health-check task started with it: the replica becomes a candidate without a hand check.
    async with asyncio.timeout(5):
        while not c.candidates("m"):
            await asyncio.sleep(0.01)
    changed = c.changed()
    c.set_urls([])
    assert c.endpoints == {} and changed.done() and c.candidates("m") == [] and e.healthy


async def test_a_removed_replica_s_adapters_are_forgotten(cluster: tuple[Cluster, GatewayMetrics]) -> None:
    # Kept, the record would still count the adapters as resident on a replica that is gone (the
    # gauge below), and a replica coming back at the same URL would be believed to hold them.
    c, metrics = cluster
    c.placement = AdapterPlacement(metrics=metrics)
    c.endpoints["http://a"] = Endpoint("http://a", frozenset({"m"}), healthy=True)
    c.endpoints["http://b"] = Endpoint("http://b", frozenset({"m"}), healthy=True)
    c.placement.observe_cards("http://a", {"m": {}, "lora": {"parent": "m"}})
    c.placement.observe_cards("http://b", {"m": {}, "lora": {"parent": "m"}})

    def held() -> float | None:
        return metrics.registry.get_sample_value("inferstack_adapter_replicas", {"model": "m", "adapter": "lora"})

    assert held() == 2
    c.set_urls(["http://b"])
    assert c.placement.replica("http://a") is None and c.placement.replica("http://b") is not None
    assert held() == 1


async def test_membership_changes_are_logged_with_the_replica(
    cluster: tuple[Cluster, GatewayMetrics], replica: tuple[Replica, str], caplog: pytest.LogCaptureFixture
) -> None:
    c, _ = cluster
    _, url = replica
    with caplog.at_level(logging.INFO, logger="inferstack.upstream"):
        c.set_urls([url])
        c.set_urls([url])  # no change: no line
        c.set_urls([])
    lines = [
        (r.levelno, r.getMessage(), r.__dict__.get("upstream"))
        for r in caplog.records
        if r.name == "inferstack.upstream" and "healthy" not in r.getMessage()
    ]
    assert lines == [(logging.INFO, "replica added", url), (logging.INFO, "replica removed", url)]


async def test_close_ends_every_health_check_and_a_replica_added_after_it_is_not_checked(
    replica: tuple[Replica, str],
) -> None:
    # The app's lifespan closes the cluster at shutdown: it must return (not raise its checkers'
    # cancellation) with every checker ended, and discovery's last word after it starts none.
    _, url = replica
    async with aiohttp.ClientSession() as session:
        c = Cluster(Settings(upstreams=[]), session, GatewayMetrics())
        c.set_urls([url])
        checkers = [t for t in asyncio.all_tasks() if t.get_name() == f"health {url}"]
        await c.close()
        assert len(checkers) == 1 and checkers[0].done()
        c.set_urls([url, "http://another:8000"])
        assert [t for t in asyncio.all_tasks() if t.get_name().startswith("health ")] == []


async def test_an_adapter_loaded_on_demand_is_served_by_every_replica_of_its_base(
    cluster: tuple[Cluster, GatewayMetrics],
) -> None:
    c, _ = cluster
    c.adapter_bases.update({"lora": "m", "other": "b"})
    a = c.endpoints["http://a"] = Endpoint("http://a", frozenset({"m"}), healthy=True)
    listed = c.endpoints["http://l"] = Endpoint("http://l", frozenset({"m", "lora"}), healthy=True)
    c.endpoints["http://b"] = Endpoint("http://b", frozenset({"b"}), healthy=True)
    assert c.candidates("lora") == [a, listed] and c.candidates("nothing") == []
    assert c.served(a) == ["m", "lora"]
    assert sorted(c.served(listed)) == ["lora", "m"]  # listed once, not also as loadable


def listing(*names: str, parent: str | None = None) -> dict[str, Any]:
    cards = [{"id": n, "root": f"/w/{n}", **({"parent": parent} if parent else {})} for n in names]
    return {"object": "list", "data": cards}


async def churn(c: Cluster, e: Endpoint, server: Replica, prefix: str, *kept: str) -> None:
    """More names listed and dropped than the bound (``kept`` stay listed): the longest unlisted are forgotten."""
    server.models = listing("base", *kept, *(f"{prefix}-{i:04}" for i in range(UNLISTED_MODELS + 1)))
    await c.check(e)
    server.models = listing("base", *kept)
    await c.check(e)
    assert f"{prefix}-0000" not in c.known_models  # (the bound was passed)


@pytest.fixture
def member(
    cluster: tuple[Cluster, GatewayMetrics], replica: tuple[Replica, str]
) -> tuple[Cluster, GatewayMetrics, Replica, Endpoint]:
    """The cluster with the replica as a member, checked by hand (no health-check task)."""
    c, metrics = cluster
    server, url = replica
    return c, metrics, server, c.endpoints.setdefault(url, Endpoint(url))


async def listed_then_dropped(c: Cluster, e: Endpoint, server: Replica, name: str) -> None:
    """``name`` listed by the replica, then dropped: it joins the unlisted, unless declared."""
    server.models = listing("base", name)
    await c.check(e)
    server.models = listing("base")
    await c.check(e)


async def test_names_no_replica_lists_any_more_are_remembered_up_to_a_bound(
    cluster: tuple[Cluster, GatewayMetrics], replica: tuple[Replica, str], caplog: pytest.LogCaptureFixture
) -> None:
    # Every name an engine listed once was known until restart: an engine registering adapters under a
    # fresh name per upload grew the set (and its series, and the adapter bookkeeping) without end.
    c, metrics = cluster
    placement = c.placement = AdapterPlacement(metrics=metrics)
    c.declare(["catalogued"])
    caplog.set_level(logging.INFO, logger="inferstack.upstream")
    server, url = replica
    e = c.endpoints[url] = Endpoint(url)
    old = [f"upload-{i:04}" for i in range(UNLISTED_MODELS + 100)]
    server.models = listing("base", *old[:100])
    await c.check(e)
    assert replicas(metrics, "upload-0000", "ready") == 1
    server.models = listing("base", *old[100:], parent="base")
    await c.check(e)
    assert set(old) | {"base", "declared", "catalogued"} == c.known_models
    assert placement.base_of("upload-0100") == "base"
    placement.sent(url, "upload-0100")
    assert replicas(metrics, "upload-0000", "ready") == 0

    # A new upload replaces the lot: what no replica lists is remembered (scaled to zero: its requests
    # wait), the longest unlisted forgotten past the bound; listed and declared names always stay.
    server.models = listing("base", "upload-new", parent="base")
    await c.check(e)
    assert len(c.known_models - {"base", "upload-new", "declared", "catalogued"}) == UNLISTED_MODELS
    assert {"base", "upload-new", "declared", "catalogued"} <= c.known_models
    assert not set(old[:100]) & c.known_models  # unlisted first: forgotten first
    assert set(old[100:]) <= c.known_models
    assert replicas(metrics, "upload-0000", "ready") is None  # its series went with it
    assert replicas(metrics, "upload-0000", "ejected") is None
    assert replicas(metrics, "upload-0100", "ready") == 0

    # The replica leaves: its names are unlisted too, the oldest of the rest forgotten.
    c.set_urls([])
    assert len(c.known_models - {"declared", "catalogued"}) == UNLISTED_MODELS
    assert {"base", "upload-new"} <= c.known_models and "upload-0100" not in c.known_models
    assert placement.base_of("upload-0100") is None and placement.demand("upload-0100") == 0.0
    assert (
        metrics.registry.get_sample_value("inferstack_adapter_replicas", {"model": "base", "adapter": "upload-0100"})
        is None
    )

    # Operators see each name forgotten, oldest first.
    forgotten = [
        (r.levelno, r.__dict__["model"])
        for r in caplog.records
        if r.getMessage() == "model forgotten: no replica has listed it for long"
    ]
    assert forgotten == [(logging.INFO, name) for name in old[:102]]

    # A forgotten name listed again is known again, series and all.
    e = c.endpoints[url] = Endpoint(url)
    server.models = listing("base", "upload-0000")
    await c.check(e)
    assert "upload-0000" in c.known_models and replicas(metrics, "upload-0000", "ready") == 1


async def test_a_name_one_replica_still_lists_is_not_forgotten_when_another_drops_it(
    cluster: tuple[Cluster, GatewayMetrics], replica: tuple[Replica, str]
) -> None:
    c, metrics = cluster
    server, url = replica
    other = Replica()
    async for url_b in other.serve():
        a = c.endpoints[url] = Endpoint(url)
        b = c.endpoints[url_b] = Endpoint(url_b)
        server.models = other.models = listing("shared")
        await c.check(a)
        await c.check(b)
        server.models = listing("gone")
        await c.check(a)  # a drops "shared": b still lists it, so it is not unlisted
        churn = [f"upload-{i:04}" for i in range(UNLISTED_MODELS + 1)]
        server.models = listing(*churn)
        await c.check(a)
        server.models = listing("gone")
        await c.check(a)  # more unlisted names than the bound: the longest unlisted are forgotten
        assert "upload-0000" not in c.known_models  # (the bound was passed)
        assert "shared" in c.known_models and replicas(metrics, "shared", "ready") == 1
        assert c.candidates("shared") == [b]


async def test_a_name_declared_after_it_was_unlisted_is_never_forgotten(
    member: tuple[Cluster, GatewayMetrics, Replica, Endpoint],
) -> None:
    # The catalog, reloaded, may name a model replicas listed before: from then on it is declared,
    # known whatever the replicas list (its requests wait for a replica instead of getting 404).
    c, metrics, server, e = member
    await listed_then_dropped(c, e, server, "cat")  # "cat" unlisted, the longest so far
    c.declare(["cat"])
    await churn(c, e, server, "first")
    assert "cat" in c.known_models and replicas(metrics, "cat", "ready") == 0
    await listed_then_dropped(c, e, server, "cat")  # dropped again: declared, so not unlisted
    await churn(c, e, server, "second")
    assert "cat" in c.known_models and replicas(metrics, "cat", "ready") == 0


async def test_a_name_listed_again_is_not_forgotten_while_it_is_listed(
    member: tuple[Cluster, GatewayMetrics, Replica, Endpoint],
) -> None:
    # Requests for a name the gateway does not know get 404: a listed name must stay known.
    c, metrics, server, e = member
    await listed_then_dropped(c, e, server, "back")  # "back" unlisted, the longest so far
    server.models = listing("base", "back")
    await c.check(e)  # listed again: no longer unlisted
    await churn(c, e, server, "other", "back")
    assert "back" in c.known_models and replicas(metrics, "back", "ready") == 1


async def test_the_names_of_every_replica_removed_at_once_are_unlisted(
    member: tuple[Cluster, GatewayMetrics, Replica, Endpoint],
) -> None:
    # Discovery may drop several replicas in one update: each one's names join the unlisted (and are
    # forgotten in their turn), not only the last one's.
    c, _, server, e = member
    server.models = listing("base")
    await c.check(e)
    one, two = Replica(), Replica()
    one.models, two.models = listing("one"), listing("two")
    async for url_one in one.serve():
        async for url_two in two.serve():
            for other in (url_one, url_two):
                await c.check(c.endpoints.setdefault(other, Endpoint(other)))
            assert {"one", "two"} <= c.known_models
            c.set_urls([e.url])  # both leave at once
            await churn(c, e, server, "other")  # the longest unlisted forgotten: both, then other-0000
            assert not {"one", "two"} & c.known_models
