"""An engine's control-plane answers are read with a size bound: a real HTTP server answers
``/v1/models``, ``/metrics`` and ``/tokenize`` with more than the bound, declared, chunked (no length
given) or gzip-encoded (small on the wire, large decoded), and the gateway reads none of it whole."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import orjson
import pytest
from aiohttp import web

from inferstack.bounds import METRICS_BYTES, MODELS_BYTES, TOKENIZE_BYTES
from inferstack.catalog import AdapterRoute, AdapterVersion, Catalog
from inferstack.clock import monotonic
from inferstack.config import Settings
from inferstack.kvcache.tokenize import engine_token_ids
from inferstack.metrics.gateway import GatewayMetrics
from inferstack.upstream.adapter_loader import LOAD_PATH, AdapterLoader
from inferstack.upstream.adapters import AdapterPlacement
from inferstack.upstream.cluster import Cluster
from inferstack.upstream.endpoint import Endpoint
from inferstack.upstream.load import LoadScraper

from ..stand_in import serving

LOAD = b'vllm:num_requests_running{engine="0",model_name="m"} 3.0\nvllm:num_requests_waiting{engine="0"} 2.0\n'


@dataclass
class Engine:
    """How large its answers are (a little more than ``size``), and how they are sent: ``declared``
    (Content-Length), ``chunked``, ``gzip``."""

    size: int = 0
    how: str = "declared"

    def models(self) -> bytes:
        return orjson.dumps({"object": "list", "data": [{"id": "m", "root": "/w"}], "pad": "x" * self.size})

    def metrics(self) -> bytes:
        return LOAD + b"# " + b"x" * self.size + b"\n"

    def tokens(self) -> bytes:
        return orjson.dumps({"tokens": [1] * max(1, self.size // 2)})

    async def send(self, request: web.Request, body: bytes) -> web.StreamResponse:
        if self.how == "gzip":
            return web.Response(body=gzip.compress(body), headers={"content-encoding": "gzip"})
        if self.how == "declared":
            return web.Response(body=body)
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(body), 1 << 20):
            await resp.write(body[i : i + (1 << 20)])
        await resp.write_eof()
        return resp


@pytest.fixture
async def engine() -> AsyncIterator[tuple[Engine, str]]:
    state = Engine()
    app = web.Application()

    async def health(_: web.Request) -> web.Response:
        return web.Response()

    async def models(request: web.Request) -> web.StreamResponse:
        return await state.send(request, state.models())

    async def metrics(request: web.Request) -> web.StreamResponse:
        return await state.send(request, state.metrics())

    async def tokenize(request: web.Request) -> web.StreamResponse:
        return await state.send(request, state.tokens())

    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/tokenize", tokenize)
    async with serving(app) as url:
        yield state, url


HOW = ("declared", "chunked", "gzip")


async def test_a_model_list_over_its_bound_takes_the_replica_out(
    engine: tuple[Engine, str], caplog: pytest.LogCaptureFixture
) -> None:
    state, url = engine
    caplog.set_level(logging.WARNING, logger="inferstack.upstream")
    async with aiohttp.ClientSession() as session:
        cluster = Cluster(Settings(upstreams=[]), session, GatewayMetrics())
        e = cluster.endpoints[url] = Endpoint(url)
        for how in HOW:
            state.size, state.how = MODELS_BYTES // 2, how
            await cluster.check(e)
            assert e.healthy and e.models == {"m"}, how
            state.size = MODELS_BYTES
            await cluster.check(e)
            assert not e.healthy, how
    # Out of rotation, and said so: the replica and the bound it passed, once per check that found it.
    lines = [(r.levelno, r.getMessage(), r.__dict__["upstream"], r.__dict__["error"]) for r in caplog.records]
    too_large = (logging.WARNING, "replica unhealthy: its /v1/models is too large", url)
    assert [line[:3] for line in lines] == [too_large] * len(HOW)
    assert all(str(MODELS_BYTES) in line[3] for line in lines)


async def test_a_metrics_answer_over_its_bound_gives_no_load_and_is_counted(engine: tuple[Engine, str]) -> None:
    state, url = engine
    metrics = GatewayMetrics()
    async with aiohttp.ClientSession() as session:
        cluster = Cluster(Settings(upstreams=[]), session, metrics)
        e = cluster.endpoints[url] = Endpoint(url)
        scraper = LoadScraper(cluster, session, 5.0, metrics)
        for n, how in enumerate(HOW, start=1):
            state.size, state.how = METRICS_BYTES // 2, how
            e.load = None
            await scraper.scrape(url)
            assert e.load is not None and e.load.running == 3.0, how
            state.size = METRICS_BYTES
            e.load = None
            await scraper.scrape(url)
            assert e.load is None, how
            too_large = metrics.registry.get_sample_value(
                "inferstack_upstream_load_scrape_failures_total", {"reason": "too_large"}
            )
            assert too_large == n, how


async def test_a_tokenize_answer_over_its_bound_gives_no_token_ids(engine: tuple[Engine, str]) -> None:
    state, url = engine
    async with aiohttp.ClientSession() as session:
        for how in HOW:
            state.size, state.how = 1000, how
            assert await engine_token_ids(session, url, {"prompt": "x"}, 30) == [1] * 500, how
            state.size = TOKENIZE_BYTES
            assert await engine_token_ids(session, url, {"prompt": "x"}, 30) is None, how


async def test_a_load_refusal_that_never_ends_fails_the_load_at_once() -> None:
    """vLLM answers a runtime load it refuses with a short error; an answer that does not end (a broken
    proxy, a buggy engine) was read until ``load_timeout`` (30 s here), holding every request waiting
    for the adapter. The refusal is read up to its bound: the load fails at once, as a refusal."""
    endless = web.Application()

    async def refuse(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=400)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            while True:
                await resp.write(b"x" * 65536)
        return resp

    endless.router.add_post(LOAD_PATH, refuse)
    version = AdapterVersion("a", "base", "/adapters/a")
    catalog = Catalog(frozenset({"base"}), {}, {"a": AdapterRoute("base", (("a@v1", 100),))}, {"a@v1": version})
    metrics = GatewayMetrics()
    settings = Settings(upstreams=[], adapters={"load": True, "load_timeout": 30})
    async with serving(endless) as url, aiohttp.ClientSession() as session:
        loader = AdapterLoader(settings, session, catalog, AdapterPlacement(catalog), metrics)
        async with asyncio.timeout(10):
            failure = await loader.prepare(Endpoint(url), "a@v1", monotonic() + 30)
        await loader.close()
    assert failure is not None and failure.kind == "adapter_load"
    labels = {"model": "base", "adapter": "a@v1", "reason": "status"}
    assert metrics.registry.get_sample_value("inferstack_adapter_load_failures_total", labels) == 1
