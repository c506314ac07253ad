"""Options of the tenancy filters, as small value objects the gateway's ``Settings`` nests.

Where a setting lives in the gateway's ``Settings`` already (``auth_enabled``, ``keys_file``,
``admin_key``, ``redis_url``, ``prices_file``) it is passed to ``Tenancy.open`` instead of repeated here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class LimitSettings(BaseModel):
    """How a request is charged against its key's RPM / TPM / concurrency limits."""

    default_max_tokens: int = Field(
        512, ge=0, description="Completion tokens reserved at admission when a request sets no max_tokens."
    )
    lease_ttl: float = Field(
        900.0,
        gt=0,
        description="Seconds after which a concurrency slot expires even if never released"
        " (a gateway that died mid-request must not hold a tenant's slots forever). Keep above the"
        " longest request (timeouts.total).",
    )


class CacheSettings(BaseModel):
    """The response cache and the Idempotency-Key store."""

    enabled: bool = Field(True, description="Serve deterministic requests from the response cache.")
    backend: Literal["memory", "redis"] = Field(
        "memory", description="memory: per gateway process; redis: shared (needs redis_url)."
    )
    ttl: float = Field(3600.0, gt=0, description="Seconds a cached response is served.")
    max_bytes: int = Field(256 * 1024 * 1024, ge=0, description="Memory backend: bytes held, LRU beyond.")
    max_entry_bytes: int = Field(1024 * 1024, ge=0, description="Larger responses are not cached.")
    per_tenant: bool = Field(
        True, description="Entries are scoped to the tenant: a hit must not tell one tenant what another asked."
    )
    idempotency_ttl: float = Field(86400.0, gt=0, description="Seconds an Idempotency-Key is remembered.")
    idempotency_wait: float = Field(
        30.0, ge=0, description="Seconds a retry waits for the first request with its key to finish."
    )


class TenancySettings(BaseModel):
    """Everything the tenancy filters need besides the gateway-wide fields."""

    limits: LimitSettings = Field(default_factory=LimitSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    reload_interval: float = Field(1.0, gt=0, description="Seconds between checks of the key and price files.")
    max_tenant_labels: int = Field(
        200, ge=1, description="Tenants that get their own metric label value; the rest are `other`."
    )
    usage_retention_days: int = Field(400, ge=1, description="Days hourly usage buckets are kept.")
