"""The provider that ``Settings.discovery`` names, configured from the other discovery settings."""

from __future__ import annotations

from ...config import Settings
from .base import DiscoveryProvider, OnError, ignore
from .dns import DnsDiscovery
from .k8s import KubernetesDiscovery
from .static import StaticDiscovery


def from_settings(settings: Settings, on_error: OnError = ignore) -> DiscoveryProvider:
    """``on_error`` is told of each failed lookup (the last set is kept)."""
    if settings.discovery == "dns":
        return DnsDiscovery(settings.dns_name, settings.dns_port, interval=settings.dns_interval, on_error=on_error)
    if settings.discovery == "k8s":
        return KubernetesDiscovery.in_cluster(
            settings.k8s_namespace, settings.k8s_service, settings.k8s_port_name, on_error=on_error
        )
    return StaticDiscovery(settings.upstreams)
