"""``create_app(settings)``: the FastAPI app, and the lifespan that owns every resource.

Nothing lives in module globals: the session, pool, discovery, hold queue, tenancy and metrics are created
when the app starts, handed explicitly to whoever needs them, and closed when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from .config import Settings
from .errors import GatewayError, InvalidRequestError, internal_error_body
from .filters import Tenancy
from .metrics.gateway import GatewayMetrics
from .relay.client import create_session
from .relay.proxy import RELAY_PATHS, ProxyEndpoint, Receive, Scope, Send
from .router.hold import HoldQueue
from .scheduler import Scheduler
from .upstream.discovery import from_settings
from .upstream.load import LoadScraper
from .upstream.pool import UpstreamPool


@dataclass
class Gateway:
    """Everything one running gateway owns. Built in the lifespan; ``app.state.gateway``."""

    settings: Settings
    metrics: GatewayMetrics
    session: aiohttp.ClientSession
    pool: UpstreamPool
    holds: HoldQueue
    scheduler: Scheduler
    tenancy: Tenancy
    proxies: dict[str, ProxyEndpoint] = field(default_factory=dict)
    draining: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


class GatewayApp(FastAPI):
    """FastAPI, with the three relay endpoints dispatched before its middleware stack.

    Every ``send`` of a stream would otherwise pass through three middleware wrappers, once per
    token; the relay endpoints handle their own errors, so they need none of them.
    """

    hot_paths: ClassVar[dict[str, str]] = {path: kind for kind, path in RELAY_PATHS.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            kind = self.hot_paths.get(scope["path"])
            gateway: Gateway | None = getattr(self.state, "gateway", None)
            if kind is not None and gateway is not None:
                await gateway.proxies[kind](scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class _ProxyRoute:
    """Dispatches to the lifespan-built ProxyEndpoint: routes exist before the resources do."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway: Gateway = scope["app"].state.gateway
        await gateway.proxies[self.kind](scope, receive, send)


@contextlib.asynccontextmanager
async def _running(app: FastAPI, settings: Settings, metrics: GatewayMetrics) -> AsyncIterator[None]:
    """Build every resource in order, hand it to whoever needs it, close it all in reverse."""
    async with contextlib.AsyncExitStack() as stack:
        tenancy = await stack.enter_async_context(
            Tenancy.open(
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
        pool = UpstreamPool(settings, session, metrics)
        stack.push_async_callback(pool.close)
        holds = HoldQueue(settings, pool, metrics)
        scheduler = Scheduler(settings, metrics)
        gateway = Gateway(settings, metrics, session, pool, holds, scheduler, tenancy)
        for kind in ("chat", "completions", "embeddings"):
            gateway.proxies[kind] = ProxyEndpoint(kind, settings, session, pool, holds, scheduler, metrics, tenancy)
        app.state.gateway = gateway
        discovery = from_settings(settings)
        gateway.tasks.append(asyncio.create_task(discovery.run(pool.set_urls), name="discovery"))
        scraper = LoadScraper(pool, session, settings.routing.scrape_interval)
        gateway.tasks.append(asyncio.create_task(scraper.run(), name="engine load scraper"))
        try:
            yield
        finally:
            for task in gateway.tasks:
                task.cancel()
            await asyncio.gather(*gateway.tasks, return_exceptions=True)


def _month_start(at: float) -> float:
    now = datetime.fromtimestamp(at, UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC).timestamp()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()
    metrics = GatewayMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _running(app, settings, metrics):
            yield

    app = GatewayApp(title="inferstack gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.metrics = metrics
    for kind, path in RELAY_PATHS.items():
        # Reached only for other methods (405) or before start-up: POSTs take GatewayApp's fast path.
        app.router.routes.append(Route(path, _ProxyRoute(kind), methods=["POST"]))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive. Deliberately checks nothing else: a busy gateway is not a dead one."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        """Can this gateway take requests? Not while draining. Otherwise yes if a replica is healthy,
        or if models are declared: their requests are held while engines scale from zero, and a
        gateway out of its Service would keep the demand that wakes them from ever arriving."""
        gateway: Gateway = request.app.state.gateway
        if gateway.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if gateway.pool.ready():
            return JSONResponse({"status": "ready"})
        if settings.models:
            return JSONResponse({"status": "ready", "note": "no healthy replica; requests are held"})
        return JSONResponse({"status": "no healthy upstream"}, status_code=503)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        gateway: Gateway = request.app.state.gateway
        cards = gateway.pool.model_cards()
        listed = {card["id"] for card in cards}
        # Models scaled to zero still exist: list them, so clients do not see them vanish.
        cards += [
            {"id": m, "object": "model", "owned_by": "inferstack"} for m in sorted(gateway.pool.known_models - listed)
        ]
        return {"object": "list", "data": cards}

    @app.get("/admin/usage")
    async def admin_usage(request: Request, start: str = "", end: str = "") -> Response:
        """Usage and spend per tenant for a time range (epoch seconds; default: this month so far)."""
        gateway: Gateway = request.app.state.gateway
        try:
            end_s = float(end) if end else time.time()
            start_s = float(start) if start else _month_start(end_s)
            report = await gateway.tenancy.usage_report(request.headers.get("authorization"), start_s, end_s)
        except ValueError as exc:
            raise InvalidRequestError(f"Bad time range: {exc}", param="start") from None
        return JSONResponse(report)

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
