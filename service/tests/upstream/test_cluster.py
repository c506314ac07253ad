"""The cluster: membership, active health checks against real HTTP servers, the replica gauges, and
what an ejection does (its log line, its metric, the waiters it wakes)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from inferstack.config import OutlierDetection, Settings
from inferstack.metrics.gateway import GatewayMetrics
from inferstack.upstream.cluster import Cluster
from inferstack.upstream.endpoint import Endpoint


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
    c.set_urls([*c.endpoints])  # no change of membership: the gauges are published
    assert (replicas(metrics, "m", "ready"), replicas(metrics, "m", "ejected")) == (1, 1)
    # A declared model no replica serves yet has its series, at zero (the autoscaler reads them).
    assert (replicas(metrics, "declared", "ready"), replicas(metrics, "declared", "ejected")) == (0, 0)
