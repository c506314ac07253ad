"""Gateway settings: one pydantic-settings class, environment prefix ``INFERSTACK_``.

Every setting of the gateway lives in this package, as small value objects (``Timeouts``,
``RetryPolicy``, ``Routing``, ``TenancySettings``...: ``values.py`` and ``routing.py``) nested in
``Settings`` and set with ``__``, for example ``INFERSTACK_TIMEOUTS__CONNECT=2``.
``docs/configuration.md`` lists every field. The package imports no other module of the gateway (but
value objects kept beside their feature, pydantic only, such as ``kvcache/settings.py``): everything
else imports it, by the names re-exported here.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .routing import BUILTIN_PROFILES, Adapters, KVEvents, ProfileSpec, Routing
from .values import (
    CacheSettings,
    HealthCheck,
    LimitSettings,
    Listener,
    OutlierDetection,
    RedisSettings,
    Responses,
    RetryPolicy,
    TenancySettings,
    Timeouts,
)

__all__ = [
    "BUILTIN_PROFILES",
    "CLIENT_VARIABLES",
    "ENV_PREFIX",
    "Adapters",
    "CacheSettings",
    "HealthCheck",
    "KVEvents",
    "LimitSettings",
    "Listener",
    "OutlierDetection",
    "ProfileSpec",
    "RedisSettings",
    "Responses",
    "RetryPolicy",
    "Routing",
    "Settings",
    "TenancySettings",
    "Timeouts",
]


ENV_PREFIX = "INFERSTACK_"
# Variables with our prefix that belong to clients (the load tests, the smoke test, the release
# gate read the API key from it), not to the gateway: a shell that exports one must still start it.
CLIENT_VARIABLES = frozenset({"INFERSTACK_API_KEY"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    host: str = Field("0.0.0.0", description="Listen address.")
    port: int = Field(8080, ge=1, le=65535, description="Listen port for the API and health (the public one).")
    admin_port: int = Field(
        8081,
        ge=1,
        le=65535,
        description="Listen port for /metrics and /admin/* (never the public port: tenant names, spend).",
    )
    discovery: Literal["static", "dns", "k8s"] = Field("static", description="Where replicas come from.")
    upstreams: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:8000"],
        description="Static discovery: comma-separated base URLs of vLLM servers.",
    )
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Models that exist even while no replica serves them: their requests wait for one"
        " (scale from zero) instead of getting 404. Comma-separated.",
    )
    catalog_file: str = Field(
        "",
        description="The fleet catalog (JSON from `make fleet`: k8s/fleet/generated/catalog.json): its models and"
        " LoRA adapters exist at zero replicas, its aliases name a model, its adapter rollouts pick a version;"
        " anything else is 404 before an engine sees it. Read once at start.",
    )
    dns_name: str = Field("", description="DNS discovery: name whose A records are the replicas.")
    dns_port: int = Field(8000, ge=1, le=65535, description="DNS discovery: the engines' port.")
    dns_interval: float = Field(5.0, gt=0, description="DNS discovery: seconds between resolutions.")
    k8s_namespace: str = Field("default", description="EndpointSlice discovery: the engines' namespace.")
    k8s_service: str = Field("", description="EndpointSlice discovery: the engines' Service name.")
    k8s_port_name: str = Field("http", description="EndpointSlice discovery: the engines' named port.")
    routing_policy: str = Field(
        "prefix_affinity",
        description="The scheduling profile that chooses a replica: prefix_affinity, least_load, session,"
        " round_robin, precise_prefix (needs kv_events.enabled), adapter_affinity (LoRA adapters where they"
        " are loaded), or one of `routing.profiles`.",
    )
    auth_enabled: bool = Field(True, description="Require `Authorization: Bearer <key>`.")
    keys_file: str = Field("", description="YAML file of API key entries; reloaded when it changes.")
    admin_key: str = Field(
        "", description="SHA-256 (hex) of the admin key for /admin/usage (`inferstack keys hash`); empty: no admin."
    )
    redis_url: str = Field("", description="Redis for limits, usage and cache shared across replicas.")
    expected_replicas: int = Field(
        1,
        ge=1,
        description="Gateway replicas serving the same tenants. Above 1, limits, budgets, usage and"
        " Idempotency-Key records are only exact when shared: the gateway refuses to start without"
        " INFERSTACK_REDIS_URL.",
    )
    require_shared_state: bool = Field(
        False,
        description="Refuse to start without INFERSTACK_REDIS_URL whatever the replica count: set it in every"
        " deployment an autoscaler may scale past one replica.",
    )
    prices_file: str = Field("", description="YAML price table in USD per 1M tokens per model.")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Larger request bodies get 413.")
    max_in_flight_per_replica: int = Field(
        256, ge=1, description="Requests the gateway sends to one replica at once; more wait in the queue."
    )
    hold_timeout: float = Field(
        120.0, ge=0, description="Seconds a request waits for a ready replica (scale from zero) before 503."
    )
    queue_timeout: float = Field(
        30.0, ge=0, description="Seconds a request waits while every replica is at its in-flight cap, then 429."
    )
    max_held_requests: int = Field(1000, ge=0, description="Requests that may wait at once; more get 429.")
    drain_grace: float = Field(
        5.0, ge=0, description="Seconds after SIGTERM that new requests are still served (readiness fails)."
    )
    drain_deadline: float = Field(120.0, ge=0, description="Seconds in-flight requests get after SIGTERM.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    access_log_flush_interval: float = Field(
        0.1,
        ge=0,
        le=10,
        description="Seconds access lines may wait to be written in one batch (64 KiB at most; other"
        " records flush them first; 0: each line written at once).",
    )
    timeouts: Timeouts = Field(default_factory=Timeouts)
    responses: Responses = Field(default_factory=Responses)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    health: HealthCheck = Field(default_factory=HealthCheck)
    outlier: OutlierDetection = Field(default_factory=OutlierDetection)
    routing: Routing = Field(default_factory=Routing)
    kv_events: KVEvents = Field(default_factory=KVEvents)
    adapters: Adapters = Field(default_factory=Adapters)
    listener: Listener = Field(default_factory=Listener)
    tenancy: TenancySettings = Field(default_factory=TenancySettings)

    @field_validator("upstreams", "models", mode="before")
    @classmethod
    def _split_upstreams(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("upstreams")
    @classmethod
    def _check_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return [url.rstrip("/") for url in urls]

    @model_validator(mode="after")
    def _no_unknown_variables(self) -> Settings:
        # pydantic-settings ignores unknown variables; a typo (INFERSTACK_TIMEOUT__IDLE) must not be.
        unknown = [
            name
            for name in os.environ
            if name.startswith(ENV_PREFIX) and name not in CLIENT_VARIABLES and not _known(name)
        ]
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return self

    @model_validator(mode="after")
    def _known_profile(self) -> Settings:
        profiles = self.routing.all_profiles()
        if self.routing_policy not in profiles:
            raise ValueError(f"routing_policy {self.routing_policy!r} names no scheduling profile")
        if self.routing.adapter_policy and self.routing.adapter_policy not in profiles:
            raise ValueError(f"routing.adapter_policy {self.routing.adapter_policy!r} names no scheduling profile")
        return self

    @model_validator(mode="after")
    def _ports_differ(self) -> Settings:
        if self.admin_port == self.port:
            raise ValueError("INFERSTACK_ADMIN_PORT must differ from INFERSTACK_PORT")
        return self

    @model_validator(mode="after")
    def _shared_state(self) -> Settings:
        # Per-process limits behind N replicas admit N x the limit: refuse rather than break a promise.
        if (self.require_shared_state or self.expected_replicas > 1) and not self.redis_url:
            raise ValueError(
                "limits, budgets and Idempotency-Key are promised across gateway replicas"
                f" (INFERSTACK_REQUIRE_SHARED_STATE={str(self.require_shared_state).lower()},"
                f" INFERSTACK_EXPECTED_REPLICAS={self.expected_replicas}) but INFERSTACK_REDIS_URL is not set"
            )
        return self

    @model_validator(mode="after")
    def _discovery_complete(self) -> Settings:
        if self.discovery == "dns" and not self.dns_name:
            raise ValueError("discovery=dns needs INFERSTACK_DNS_NAME")
        if self.discovery == "k8s" and not self.k8s_service:
            raise ValueError("discovery=k8s needs INFERSTACK_K8S_SERVICE")
        for name, policy in (
            ("routing_policy", self.routing_policy),
            ("routing.adapter_policy", self.routing.adapter_policy),
        ):
            if policy == "precise_prefix" and not self.kv_events.enabled:
                raise ValueError(f"{name}=precise_prefix needs INFERSTACK_KV_EVENTS__ENABLED=true")
        return self


def _known(variable: str) -> bool:
    """Is ``INFERSTACK_A__B__C`` a field path of Settings (nested value objects included)?"""
    model: type[BaseModel] = Settings
    parts = variable[len(ENV_PREFIX) :].lower().split("__")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        nested = field.annotation
        if i == len(parts) - 1:
            return True
        if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
            return False
        model = nested
    return True
