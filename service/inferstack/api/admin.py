"""Operational routes, served on the admin listener only (``app.GatewayApp``): ``/metrics`` (Prometheus)
and ``/admin/usage`` (usage and spend per tenant)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import gateway
from ..clock import wall
from ..errors import InvalidRequestError

router = APIRouter()


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/admin/usage")
async def admin_usage(request: Request, start: str = "", end: str = "") -> Response:
    """Usage and spend per tenant for a time range (epoch seconds; default: this month so far)."""
    tenancy = gateway.of(request).tenancy
    end_s = _epoch(end, "end") if end else wall()
    start_s = _epoch(start, "start") if start else _month_start(end_s)
    try:
        report = await tenancy.usage_report(request.headers.get("authorization"), start_s, end_s)
    except ValueError as exc:
        raise InvalidRequestError(f"Bad time range: {exc}", param="start") from None
    return JSONResponse(report)


LAST_EPOCH = 253_402_300_799.0
"""9999-12-31T23:59:59Z: the last second ``datetime`` can hold (``float()`` also takes inf, nan, 1e300)."""


def _epoch(value: str, param: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= LAST_EPOCH:  # nan fails both comparisons
        raise InvalidRequestError(
            f"Bad time range: {param!r} must be epoch seconds, 0 to {LAST_EPOCH:.0f}.", param=param
        )
    return seconds


def _month_start(at: float) -> float:
    now = datetime.fromtimestamp(at, UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC).timestamp()
