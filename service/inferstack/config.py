"""Gateway settings: one pydantic-settings class, environment prefix ``INFERSTACK_``.

Every setting of the gateway lives here, as small value objects (``Timeouts``, ``RetryPolicy``,
``Routing``, ``TenancySettings``...) nested in ``Settings`` and set with ``__``, for example
``INFERSTACK_TIMEOUTS__CONNECT=2``. ``docs/configuration.md`` lists every field. This module imports
no other module of the gateway (but value objects kept beside their feature, pydantic only, such as
``kvcache/settings.py``): everything else imports it.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .kvcache.settings import LocalTokenizerSettings


class Timeouts(BaseModel):
    """Timeouts in seconds. Streams are bounded by ``idle`` between chunks, not only ``total``."""

    connect: float = Field(5.0, gt=0, description="Connecting to an upstream replica.")
    first_byte: float = Field(
        120.0, gt=0, description="A stream: from sending the request to the first byte of the upstream's body."
    )
    response: float = Field(
        300.0,
        gt=0,
        description="A non-stream request: from sending it to the whole answer (vLLM sends it at once, when done)."
        " Not retried when it expires: the answer may have been generated.",
    )
    idle: float = Field(30.0, gt=0, description="Between two chunks of an upstream stream.")
    client_write: float = Field(
        30.0,
        gt=0,
        description="Writing to a client that does not read: then the request ends (its slots are freed) and"
        " the replica is not blamed.",
    )
    total: float = Field(600.0, gt=0, description="A whole upstream request, first attempt to last byte.")

    @model_validator(mode="after")
    def _ordered(self) -> Timeouts:
        if max(self.connect, self.first_byte, self.response) > self.total:
            raise ValueError("connect, first_byte and response must not exceed total")
        return self


class RetryPolicy(BaseModel):
    """Retries happen only before the first byte reaches the client, each on another replica, and only
    when it is safe: the replica refused or failed the request (connect error, 5xx, a broken connection,
    no first byte of a stream); never after a non-stream request's response timeout."""

    max_retries: int = Field(2, ge=0, le=10, description="Extra attempts after the first one.")
    budget_percent: float = Field(
        20.0,
        ge=0,
        le=100,
        description="Retry budget (as Envoy's): retries in flight stay under this share of active requests.",
    )
    min_retry_concurrency: int = Field(
        3, ge=0, description="Retry budget: retries in flight always allowed, whatever the share."
    )
    backoff_base: float = Field(0.025, ge=0, description="First back-off in seconds, doubled per retry.")
    backoff_max: float = Field(1.0, ge=0, description="Cap on one back-off, in seconds (full jitter below it).")


class HealthCheck(BaseModel):
    """Active health checking (``GET /health``) and model discovery (``GET /v1/models``)."""

    interval: float = Field(5.0, gt=0, description="Seconds between checks of one replica.")
    timeout: float = Field(2.0, gt=0, description="Seconds a check may take.")


class OutlierDetection(BaseModel):
    """Passive health: eject a replica after consecutive failures, for longer each time."""

    consecutive_failures: int = Field(3, ge=1, description="Failures in a row that eject a replica.")
    base_ejection: float = Field(5.0, gt=0, description="First ejection in seconds; doubles per ejection.")
    max_ejection: float = Field(300.0, gt=0, description="Longest ejection in seconds.")
    max_ejected_percent: int = Field(
        50, ge=0, le=100, description="Never eject more than this share of a model's replicas."
    )


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
    idempotency_max_bytes_per_tenant: int = Field(
        16 * 1024 * 1024,
        ge=0,
        description="Memory backend: bytes of Idempotency-Key records kept per tenant (LRU beyond, within"
        " that tenant only).",
    )
    idempotency_wait: float = Field(
        30.0, ge=0, description="Seconds a retry waits for the first request with its key to finish."
    )


FailureMode = Literal["open", "closed"]


class RedisSettings(BaseModel):
    """Talking to Redis, and what each feature does while Redis cannot answer (docs/tenancy.md).

    ``open``: the feature steps aside (no limit / no budget check / no cache / no Idempotency-Key
    guarantee) and the request is served. ``closed``: the request gets 503 with an OpenAI body and
    ``Retry-After``, and ``/readyz`` fails while Redis is down. Either way
    ``inferstack_dependency_errors_total`` counts it and ``inferstack_dependency_up`` shows it.
    """

    connect_timeout: float = Field(0.5, gt=0, description="Seconds to open a connection to Redis.")
    command_timeout: float = Field(
        0.5, gt=0, description="Seconds one Redis command (or script) may take before it counts as failed."
    )
    check_interval: float = Field(
        1.0,
        gt=0,
        description="Seconds between PINGs that tell whether Redis is up; while it is down, requests do"
        " not wait for it but apply the policy at once.",
    )
    limits: FailureMode = Field(
        "open", description="RPM/TPM/concurrency while Redis is down: open = unlimited, closed = 503."
    )
    budgets: FailureMode = Field(
        "open",
        description="Monthly budgets while Redis is down: open = not checked (spend made meanwhile is not"
        " recorded), closed = 503 for tenants with a budget.",
    )
    cache: FailureMode = Field("open", description="Redis response cache while Redis is down: open = miss.")
    idempotency: FailureMode = Field(
        "open",
        description="Idempotency-Key while Redis is down: open = served without the replay guarantee,"
        " closed = 503 for requests that carry the header.",
    )

    def closed_features(self) -> list[str]:
        return [f for f in ("limits", "budgets", "cache", "idempotency") if getattr(self, f) == "closed"]


class TenancySettings(BaseModel):
    """Everything the tenancy filters need besides the gateway-wide fields."""

    limits: LimitSettings = Field(default_factory=LimitSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    reload_interval: float = Field(1.0, gt=0, description="Seconds between checks of the key and price files.")
    max_tenant_labels: int = Field(
        200, ge=1, description="Tenants that get their own metric label value; the rest are `other`."
    )
    usage_retention_days: int = Field(400, ge=1, description="Days hourly usage buckets are kept.")


class Listener(BaseModel):
    """The public listener's defences against idle, slow and too many clients (slowloris)."""

    keepalive_timeout: float = Field(
        30.0, gt=0, description="Seconds an idle connection is kept open, before its first request too."
    )
    header_timeout: float = Field(10.0, gt=0, description="Seconds from a request's first byte to its last header.")
    body_timeout: float = Field(
        30.0, gt=0, description="Seconds from a request's headers to the end of its body (read before auth)."
    )
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="Larger request lines + headers get 431.")
    max_connections: int = Field(
        10000,
        ge=1,
        description="Open public connections per process; more get 503 and are closed at once (admin: no cap).",
    )


ENV_PREFIX = "INFERSTACK_"
# Variables with our prefix that belong to clients (the load tests, the smoke test, the release
# gate read the API key from it), not to the gateway: a shell that exports one must still start it.
CLIENT_VARIABLES = frozenset({"INFERSTACK_API_KEY"})


class ProfileSpec(BaseModel):
    """A scheduling profile (docs/routing.md): filters in order, weighted scorers, one picker, by plugin name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    filters: tuple[str, ...] = ()
    scorers: dict[str, float] = Field(default_factory=dict)
    picker: str = "max_score"

    @field_validator("scorers")
    @classmethod
    def _weights(cls, scorers: dict[str, float]) -> dict[str, float]:
        if any(w <= 0 for w in scorers.values()):
            raise ValueError("scorer weights must be > 0")
        return scorers


BUILTIN_PROFILES: dict[str, ProfileSpec] = {
    "prefix_affinity": ProfileSpec(filters=("bounded_load",), scorers={"prefix": 1.0}),
    "least_load": ProfileSpec(),
    "session": ProfileSpec(filters=("bounded_load",), scorers={"session": 1.0}),
    "round_robin": ProfileSpec(picker="round_robin"),
    "precise_prefix": ProfileSpec(
        filters=("bounded_load",), scorers={"precise_prefix": 10.0, "load": 1.0, "kv_cache": 1.0}
    ),
    "adapter_affinity": ProfileSpec(filters=("adapter_bound",), scorers={"adapter": 1.0}),
}
"""The six policies as profiles; ``least_load`` has no scorer: every candidate ties and the picker
takes the least loaded. ``adapter_affinity`` sends a LoRA adapter's requests to replicas that hold it
(then a free slot, then the least loaded; ``adapter_bound`` caps each replica). ``precise_prefix`` exists
only with ``kv_events.enabled``; a tenth of the prompt cached outweighs the whole spread of load
and of KV usage (llm-d's 3:1:1 let a one-request load difference send a turn away from its history:
docs/routing.md)."""


class Routing(BaseModel):
    """Knobs of the scheduling plugins (docs/routing.md) and of the engine load signals they read."""

    load_factor: float = Field(
        1.5,
        ge=1,
        description="Bounded loads: affinity never sends a replica above c x the mean load"
        " (1.5: bench/routing measured max/mean 1.18 with it; 1.25 spills more and triples TTFT p90).",
    )
    load_slack: float = Field(
        1.0,
        ge=0,
        description="Bounded loads: the cap is never below the mean load plus this many requests. A gateway pod"
        " counts only its own requests; at 1-2 per replica ceil(c x mean) is 1 on 3 replicas and sent"
        " turns away from idle replicas holding their prefix (docs/routing.md). 0: c x mean alone. Not"
        " applied to adapter_affinity's bound (adapter_load_factor is already loose).",
    )
    adapter_load_factor: float = Field(
        2.0,
        ge=1,
        description="Bounded loads for adapter_affinity: a replica holding an adapter takes its requests up to"
        " c x the mean load, then another loads it (each move costs a load; docs/adapters.md).",
    )
    adapter_traffic_factor: float = Field(
        1.2,
        ge=1,
        description="adapter_affinity also caps each replica's share of recent decisions at c x the mean share"
        " (balances light loads, where in-flight counts are all 0).",
    )
    waiting_weight: float = Field(1.0, ge=0, description="Weight of the engine's waiting queue in a replica's load.")
    block_chars: int = Field(256, ge=16, description="Prefix hashing: characters per block of the rendered prompt.")
    max_blocks: int = Field(128, ge=1, description="Prefix hashing: leading blocks hashed per request.")
    home_blocks: int = Field(4, ge=1, description="Prefix hashing: leading blocks that pick a new prefix's home.")
    index_capacity: int = Field(65536, ge=16, description="Prefix index entries kept (LRU): bounds routing memory.")
    scrape_interval: float = Field(1.0, gt=0, description="Seconds between scrapes of each engine's /metrics.")
    load_max_age: float = Field(3.0, gt=0, description="A scraped load older than this steers nothing.")
    profiles: dict[str, ProfileSpec] = Field(
        default_factory=dict,
        description="Extra scheduling profiles by name (JSON: filters, scorers with weights, picker), beside"
        " the built-in prefix_affinity, least_load, session and round_robin.",
    )

    def plugin_settings(self) -> dict[str, float | int]:
        """The knobs plugins take (every plugin picks what applies to it)."""
        return self.model_dump(exclude={"scrape_interval", "load_max_age", "profiles"})

    def all_profiles(self) -> dict[str, ProfileSpec]:
        return {**BUILTIN_PROFILES, **self.profiles}


class KVEvents(BaseModel):
    """``precise_prefix`` routing from the engines' KV-cache events (docs/routing.md)."""

    enabled: bool = Field(False, description="Subscribe to every replica's KV events and offer `precise_prefix`.")
    port: int = Field(
        5557, ge=1, le=65535, description="Where engines publish: tcp://<the replica URL's host>:<port> (`kv-events`)."
    )
    endpoints: dict[str, str] = Field(
        default_factory=dict,
        description="Explicit ZMQ endpoints by replica URL (JSON), for replicas that do not publish on `port`"
        " (local engines publish on ipc:// sockets).",
    )
    topic: str = Field("kv", description="ZMQ topic the engines publish on.")
    max_message_bytes: int = Field(
        1 << 20,
        ge=4096,
        description="Largest KV event message accepted (a publisher sending more is disconnected; it"
        " reconnects and the gap resets its view). A batch holds at most one engine step's new blocks.",
    )
    index_capacity: int = Field(
        262_144,
        ge=16,
        description="Block hashes the index keeps (LRU), about 220 bytes each (bench/kv_index_memory.py):"
        " size it to the fleet's total KV blocks (vllm:cache_config_info num_gpu_blocks).",
    )
    stale_after: float = Field(
        5.0, gt=0, description="Seconds a replica may owe KV events (it was sent new blocks) before its view is stale."
    )
    hash_seed: str = Field(
        "vllm-none-hash", description="vLLM's NONE_HASH seed: its default, or the engines' PYTHONHASHSEED when set."
    )
    tokenize_timeout: float = Field(
        0.5, gt=0, description="Seconds the engine's /tokenize may take; then the request falls back (no_tokens)."
    )
    max_blocks: int = Field(512, ge=1, description="Leading prompt blocks hashed per request.")
    tokenizer: Literal["local", "engine"] = Field(
        "local",
        description="Where a request's token ids come from: local = in the gateway for the models with files in"
        " `local_tokenizer.dirs` (checked against the engine; other models, and requests not rendered exactly"
        " here, ask the engine), engine = always the engine's /tokenize.",
    )
    local_tokenizer: LocalTokenizerSettings = Field(default_factory=LocalTokenizerSettings)


class Adapters(BaseModel):
    """LoRA adapters loaded on demand by the gateway (docs/adapters.md)."""

    load: bool = Field(
        True,
        description="Before sending a catalogued adapter's request to a replica that lacks it, load it there"
        " (POST /v1/load_lora_adapter; engines need VLLM_ALLOW_RUNTIME_LORA_UPDATING=True). Off: adapters route"
        " only to replicas that list them.",
    )
    root: str = Field(
        "/adapters",
        description="Where engines find adapters on their own disk: an S3 `source` in the catalog is sent as"
        " <root>/<its path below the base model's lora.adapters_uri>; a local `source` (/...) is sent as is.",
    )
    load_timeout: float = Field(
        60.0, gt=0, description="Seconds one adapter load may take (never past the request's own deadline)."
    )
    share_interval: float = Field(
        0.5,
        ge=0,
        description="With INFERSTACK_REDIS_URL: seconds between exchanges of the record of which adapter each"
        " replica used last with the other gateways (through Redis; fails open). 0: each gateway keeps its own.",
    )
    share_ttl: float = Field(
        600.0,
        gt=0,
        description="Seconds a replica's shared adapter record lives after its last write (replicas that left).",
    )


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
        if self.routing_policy not in self.routing.all_profiles():
            raise ValueError(f"routing_policy {self.routing_policy!r} names no scheduling profile")
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
        if self.routing_policy == "precise_prefix" and not self.kv_events.enabled:
            raise ValueError("routing_policy=precise_prefix needs INFERSTACK_KV_EVENTS__ENABLED=true")
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
