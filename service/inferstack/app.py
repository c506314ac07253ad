"""``create_app(settings)``: the FastAPI app, and the lifespan that owns every resource.

Nothing lives in module globals: the session, cluster, discovery, hold queue, scheduler, router and
tenancy are created when the app starts, handed explicitly to whoever needs them, and closed when it
stops. docs/architecture.md draws the pipeline they form.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import ClassVar

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from .api import admin, health, models
from .api.openai import OpenAIEndpoint
from .api.request import PATHS
from .catalog import Catalog
from .config import Settings
from .errors import GatewayError, internal_error_body
from .filters import open_tenancy
from .gateway import Gateway
from .kvcache.service import KVRouting
from .metrics.gateway import GatewayMetrics
from .router.router import Router
from .scheduling import Scheduler
from .tasks import BackgroundTasks
from .types import Receive, Scope, Send
from .upstream.adapter_loader import AdapterLoader
from .upstream.adapter_share import SharedUse
from .upstream.adapters import AdapterPlacement
from .upstream.client import create_pool, create_session
from .upstream.cluster import Cluster
from .upstream.discovery import from_settings
from .upstream.hold import HoldQueue
from .upstream.load import LoadScraper


class GatewayApp(FastAPI):
    """FastAPI, with the three OpenAI endpoints dispatched before its middleware stack, and the
    admin listener kept apart from the public one.

    Every ``send`` of a stream would otherwise pass through three middleware wrappers, once per
    token; the OpenAI endpoints handle their own errors, so they need none of them. Both listeners
    serve this one app: an admin path (``/metrics``, ``/admin/*``) is answered only on
    ``admin_port``, and that port answers nothing else (404 either way, as if the route did not exist).
    """

    hot_paths: ClassVar[dict[str, str]] = {path: kind for kind, path in PATHS.items()}
    admin_port: int = 0
    gateway: Gateway | None = None
    """``state.gateway`` once the lifespan built it, read per request without ``State``'s ``__getattr__``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            server = scope.get("server")
            on_admin = server is not None and server[1] == self.admin_port
            if on_admin != (path == "/metrics" or path.startswith("/admin/")):
                await _not_found(scope, send)
                return
            if scope["method"] == "POST":
                kind = self.hot_paths.get(path)
                gateway = self.gateway
                if kind is not None and gateway is not None:
                    await gateway.endpoints[kind](scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


async def _not_found(scope: Scope, send: Send) -> None:
    message = f"{scope['method']} {scope['path']}: Not Found"
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": "not_found"}
    body = orjson.dumps({"error": error})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _EndpointRoute:
    """Dispatches to the lifespan-built OpenAIEndpoint: routes exist before the resources do."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway: Gateway = scope["app"].state.gateway
        await gateway.endpoints[self.kind](scope, receive, send)


@contextlib.asynccontextmanager
async def _running(app: FastAPI, settings: Settings, metrics: GatewayMetrics) -> AsyncIterator[None]:
    """Build every resource in order, hand it to whoever needs it, close it all in reverse."""
    async with contextlib.AsyncExitStack() as stack:
        tenancy = await stack.enter_async_context(
            open_tenancy(
                settings.tenancy,
                registry=metrics.registry,
                rate_limited=metrics.rate_limited,
                auth_enabled=settings.auth_enabled,
                keys_file=settings.keys_file,
                admin_key_sha256=settings.admin_key,
                redis_url=settings.redis_url,
                prices_file=settings.prices_file,
            )
        )
        session = create_session(settings)
        stack.push_async_callback(session.close)
        pool = create_pool(settings)
        stack.push_async_callback(pool.close)
        cluster = Cluster(settings, session, metrics)
        stack.push_async_callback(cluster.close)
        catalog = Catalog.load(settings.catalog_file) if settings.catalog_file else None
        if catalog is not None:
            cluster.declare(catalog.declared())
        placement = AdapterPlacement(catalog, metrics)
        adapters = AdapterLoader(settings, session, catalog, placement, metrics)
        stack.push_async_callback(adapters.close)
        cluster.placement = placement
        cluster.adapter_bases = adapters.loadable()
        if catalog is not None:
            for row in catalog.info():
                metrics.model_info.labels(*row).set(1)
        holds = HoldQueue(settings, cluster, metrics)
        kv = None
        if settings.kv_events.enabled:
            kv = KVRouting(settings.kv_events, session, metrics.registry)
            stack.push_async_callback(kv.close)
        scheduler = Scheduler(settings, metrics, kv, placement)
        router = Router(settings, pool, cluster, holds, scheduler, metrics, kv, adapters)
        tasks = BackgroundTasks(metrics.background_task_failures)
        for task in tenancy.tasks:
            tasks.watch(task)
        gateway = Gateway(settings, metrics, session, cluster, tenancy, tasks, catalog)
        for kind in PATHS:
            gateway.endpoints[kind] = OpenAIEndpoint(kind, settings, cluster, router, tenancy, metrics, catalog)
        app.state.gateway = gateway
        if isinstance(app, GatewayApp):
            app.gateway = gateway
        discovery_errors = metrics.discovery_errors.labels(settings.discovery)  # from 0: a rate from the start
        discovery = from_settings(settings, on_error=lambda _: discovery_errors.inc())
        on_urls = cluster.set_urls
        if kv is not None:
            hub = kv.hub

            def on_urls(urls: Iterable[str]) -> None:
                urls = list(urls)
                cluster.set_urls(urls)
                hub.set_urls(urls)

        tasks.start(discovery.run(on_urls), "discovery")
        scraper = LoadScraper(cluster, session, settings.routing.scrape_interval, metrics, placement)
        tasks.start(scraper.run(), "engine load scraper")
        if tenancy.redis is not None and tenancy.redis_health is not None and settings.adapters.share_interval > 0:
            shared = SharedUse(tenancy.redis, tenancy.redis_health, placement, settings.adapters)
            tasks.start(shared.run(), "shared adapter record")
        try:
            yield
        finally:
            await tasks.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()
    metrics = GatewayMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _running(app, settings, metrics):
            yield

    app = GatewayApp(title="inferstack gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.admin_port = settings.admin_port
    app.state.metrics = metrics
    for kind, path in PATHS.items():
        # Reached only for other methods (405) or before start-up: POSTs take GatewayApp's fast path.
        app.router.routes.append(Route(path, _EndpointRoute(kind), methods=["POST"]))
    for module in (health, models, admin):
        app.include_router(module.router)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = "not_found" if exc.status_code == 404 else "method_not_allowed" if exc.status_code == 405 else None
        message = f"{request.method} {request.url.path}: {exc.detail}"
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": kind}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> Response:
        return JSONResponse(exc.to_body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        return JSONResponse(internal_error_body(), status_code=500)

    return app
