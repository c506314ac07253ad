"""A lifespan task that ends while the gateway runs fails /healthz and /readyz, is counted and logged
(inferstack/tasks.py); tasks cancelled at shutdown are not failures."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from inferstack.tasks import BackgroundTasks
from inferstack_fake_engine import EngineConfig, running_engine

from .gateway_harness import running_gateway
from .waiting import until


async def _fails() -> None:
    raise RuntimeError("watch stream broke in a way nobody expected")


async def test_a_task_that_dies_makes_the_gateway_unhealthy_and_says_which(caplog: pytest.LogCaptureFixture) -> None:
    async with (
        running_engine(EngineConfig()) as engine,
        running_gateway([engine]) as (url, app),
        httpx.AsyncClient(timeout=10) as client,
    ):
        assert (await client.get(url + "/healthz")).status_code == 200
        tasks: BackgroundTasks = app.state.gateway.tasks
        # The real tasks are watched: discovery and the engine load scraper at least.
        assert {"discovery", "engine load scraper"} <= {t.get_name() for t in tasks._tasks}
        with caplog.at_level(logging.ERROR, logger="inferstack.tasks"):
            tasks.start(_fails(), "discovery (test)")
            await until(lambda: "discovery (test)" in tasks.ended, "the task's end reported")
        for path in ("/healthz", "/readyz"):
            resp = await client.get(url + path)
            assert resp.status_code == 503, path
            assert resp.json() == {
                "status": "broken",
                "ended": {"discovery (test)": "RuntimeError: watch stream broke in a way nobody expected"},
            }
        scraped = (await client.get(url.admin + "/metrics")).text
        assert 'inferstack_background_task_failures_total{task="discovery (test)"} 1.0' in scraped
        assert any("discovery (test)" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_a_task_that_returns_is_an_end_too_and_close_cancels_without_counting() -> None:
    registry = CollectorRegistry()
    tasks = BackgroundTasks(Counter("failures", "f", ["task"], registry=registry))
    returned = tasks.start(asyncio.sleep(0), "returns")
    forever = tasks.start(asyncio.Event().wait(), "runs until cancelled")
    await returned
    await until(lambda: "returns" in tasks.ended, "the return reported")
    assert tasks.ended == {"returns": "returned"}
    await tasks.close()
    assert forever.cancelled() and tasks.ended == {"returns": "returned"}
    assert registry.get_sample_value("failures_total", {"task": "returns"}) == 1
    assert registry.get_sample_value("failures_total", {"task": "runs until cancelled"}) is None
