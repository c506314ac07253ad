"""The provider that ``Settings.discovery`` names, configured from the other discovery settings."""

from __future__ import annotations

from ...config import Settings
from .base import DiscoveryProvider
from .dns import DnsDiscovery
from .k8s import KubernetesDiscovery
from .static import StaticDiscovery


def from_settings(settings: Settings) -> DiscoveryProvider:
    if settings.discovery == "dns":
        return DnsDiscovery(settings.dns_name, settings.dns_port, interval=settings.dns_interval)
    if settings.discovery == "k8s":
        return KubernetesDiscovery.in_cluster(settings.k8s_namespace, settings.k8s_service, settings.k8s_port_name)
    return StaticDiscovery(settings.upstreams)
