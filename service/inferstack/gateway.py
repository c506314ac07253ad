"""``Gateway``: everything one running gateway owns, built in the app's lifespan (``app.state.gateway``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from starlette.requests import Request

from .api.openai import OpenAIEndpoint
from .catalog import Catalog
from .config import Settings
from .filters import Tenancy
from .metrics.gateway import GatewayMetrics
from .tasks import BackgroundTasks
from .upstream.cluster import Cluster


@dataclass
class Gateway:
    settings: Settings
    metrics: GatewayMetrics
    session: aiohttp.ClientSession
    cluster: Cluster
    tenancy: Tenancy
    tasks: BackgroundTasks
    catalog: Catalog | None = None
    endpoints: dict[str, OpenAIEndpoint] = field(default_factory=dict)
    draining: bool = False


def of(request: Request) -> Gateway:
    """The running gateway behind a FastAPI request."""
    gateway: Gateway = request.app.state.gateway
    return gateway
