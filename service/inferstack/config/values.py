"""Value objects of the listener, the upstream client and the tenancy filters (see ``config``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator


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


class Responses(BaseModel):
    """What the gateway holds of one engine answer. A stream is relayed as it arrives (at most 64 KiB
    buffered per request); a non-stream answer, or an error answer, is read whole before the client
    gets any of it, so it is bounded here."""

    max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest non-stream (or error) answer relayed; a larger one is dropped as soon as that much"
        " arrived (or is declared) and the client gets 502 `upstream_response_too_large`, counted as"
        ' `inferstack_upstream_errors_total{kind="too_large"}`, not retried (it was generated: another replica'
        " would generate it again) and not held against the replica. 64 MiB: a 16k-token completion with 20"
        " logprobs per token is about 20 MiB as JSON, 1,000 embeddings of 4,096 floats about 40 MiB.",
    )


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
