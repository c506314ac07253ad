"""``/healthz`` (the process is alive) and ``/readyz`` (it can take requests)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .. import gateway

router = APIRouter()


@router.get("/healthz")
async def healthz(request: Request) -> Response:
    """The process is alive and its background tasks run. Deliberately checks nothing else: a busy
    gateway is not a dead one. A lifespan task that ended (discovery, a watcher: ``tasks.py``) is a
    gateway only a restart repairs, so it fails here and the kubelet restarts the container."""
    gw: gateway.Gateway | None = getattr(request.app.state, "gateway", None)  # (None before start-up)
    if gw is not None and gw.tasks.ended:
        return JSONResponse({"status": "broken", "ended": gw.tasks.ended}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Can this gateway take requests? Not while draining. Otherwise yes if a replica is healthy,
    or if models are declared: their requests are held while engines scale from zero, and a
    gateway out of its Service would keep the demand that wakes them from ever arriving."""
    gw = gateway.of(request)
    if gw.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    if gw.tasks.ended:
        return JSONResponse({"status": "broken", "ended": gw.tasks.ended}, status_code=503)
    redis = gw.tenancy.redis_health
    if redis is not None and (refusing := redis.refusing()):
        # Only while a feature fails closed: then this gateway answers those requests 503.
        return JSONResponse({"status": "redis unavailable", "refusing": refusing}, status_code=503)
    if gw.cluster.ready():
        return JSONResponse({"status": "ready"})
    if gw.settings.models:
        return JSONResponse({"status": "ready", "note": "no healthy replica; requests are held"})
    return JSONResponse({"status": "no healthy upstream"}, status_code=503)
