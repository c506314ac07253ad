"""Where the upstream replicas are: providers that report the full set of base URLs whenever it changes.

    provider = from_settings(settings)            # static, dns or k8s, from INFERSTACK_DISCOVERY
    task = asyncio.create_task(provider.run(cluster.set_urls))   # owned by the app's lifespan; cancel to stop

Every provider implements ``DiscoveryProvider.run(on_change)``: run until cancelled, call ``on_change``
with the complete set (never a delta) once at start and on every change. See ``README.md`` here.
"""

from __future__ import annotations

from .base import DiscoveryProvider, OnChange
from .dns import DnsDiscovery, getaddrinfo_resolver
from .factory import from_settings
from .k8s import KubernetesApiError, KubernetesDiscovery, WatchEventTooLarge
from .static import StaticDiscovery

__all__ = [
    "DiscoveryProvider",
    "DnsDiscovery",
    "KubernetesApiError",
    "KubernetesDiscovery",
    "OnChange",
    "StaticDiscovery",
    "WatchEventTooLarge",
    "from_settings",
    "getaddrinfo_resolver",
]
