"""``Gateway``: everything one running gateway owns, built in the app's lifespan (``app.state.gateway``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from starlette.requests import Request

from .api.openai import OpenAIEndpoint
from .catalog import Catalog
from .config import Settings
from .filters import Tenancy
from .metrics.gateway import GatewayMetrics
from .upstream.cluster import Cluster


@dataclass
class Gateway:
    settings: Settings
    metrics: GatewayMetrics
    session: aiohttp.ClientSession
    cluster: Cluster
    tenancy: Tenancy
    catalog: Catalog | None = None
    endpoints: dict[str, OpenAIEndpoint] = field(default_factory=dict)
    draining: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


def of(request: Request) -> Gateway:
    """The running gateway behind a FastAPI request."""
    gateway: Gateway = request.app.state.gateway
    return gateway
