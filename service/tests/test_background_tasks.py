"""A lifespan task that ends while the gateway runs fails /healthz and /readyz, is counted and logged
(inferstack/tasks.py); tasks cancelled at shutdown are not failures; stopping them has a deadline and
survives a lost cancel."""

from __future__ import annotations

import ast
import asyncio
import gc
import logging
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

import inferstack
from inferstack.tasks import BackgroundTasks, stop
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


async def _survives_cancels(running: asyncio.Event, survive: int, stopped: asyncio.Event | None = None) -> None:
    """What a lost cancel looks like from outside: the task catches it and goes on with its loop (as a
    health loop does when the cancel comes out of ``asyncio.timeout`` as a TimeoutError)."""
    survived = 0
    running.set()
    while True:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if survived == survive or (stopped is not None and stopped.is_set()):
                raise
            survived += 1


async def test_close_stops_a_task_whose_cancel_was_lost() -> None:
    """Before: ``cancel`` then ``gather`` waited forever (a CI run hung 90 minutes at a lifespan's exit)."""
    registry = CollectorRegistry()
    tasks = BackgroundTasks(Counter("failures", "f", ["task"], registry=registry))
    running = asyncio.Event()
    stubborn = tasks.start(_survives_cancels(running, survive=1), "survives one cancel")
    await running.wait()  # (a cancel before its first step would never reach its loop)
    async with asyncio.timeout(10):
        await tasks.close()
    assert stubborn.cancelled()
    assert tasks.ended == {}


async def test_stop_leaves_a_task_that_refuses_every_cancel_after_its_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    released, running = asyncio.Event(), asyncio.Event()
    refuses = asyncio.create_task(_survives_cancels(running, survive=-1, stopped=released), name="refuses")
    ends = asyncio.create_task(asyncio.Event().wait(), name="ends")
    await running.wait()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.ERROR, logger="inferstack.tasks"):
        left = await stop([refuses, ends], within=0.6)
    took = loop.time() - started
    assert left == [refuses] and ends.cancelled() and not refuses.done()
    assert 0.6 <= took < 3.0, took  # the deadline, not forever (upper bound: slack for a loaded machine)
    assert any("'refuses'" in r.getMessage() for r in caplog.records)
    released.set()
    assert await stop([refuses]) == [] and refuses.cancelled()


async def test_stop_retrieves_errors_so_the_loop_reports_none() -> None:
    """A task that failed while stopping is no one's to report: no "Task exception was never retrieved"."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        failed = asyncio.create_task(_fails())
        await asyncio.wait([failed])
        assert await stop([failed]) == []
        del failed
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert reported == []


def test_no_close_waits_for_cancelled_tasks_without_a_deadline() -> None:
    """Every close ends its tasks with ``stop``: a function that cancels tasks and then gathers them
    waits forever for one whose cancel was lost (tasks.py says when that happens)."""
    package = Path(inferstack.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            called = {
                ast.unparse(call.func).rsplit(".", 1)[-1]
                for call in ast.walk(node)
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            }
            if {"cancel", "gather"} <= called:
                offenders.append(f"{path.relative_to(package)}:{node.lineno} {node.name}")
    assert offenders == []
