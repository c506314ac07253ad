"""Value objects of routing: scheduling profiles and their plugins' knobs, KV events, LoRA adapters (see ``config``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..kvcache.settings import LocalTokenizerSettings


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
    adapter_policy: str = Field(
        "adapter_affinity",
        description="The scheduling profile for requests that name a LoRA adapter (a catalogued version, or one"
        " an engine lists with a parent), whatever INFERSTACK_ROUTING_POLICY is: a fleet routes its base models"
        " by prefix and its adapters by where they are loaded (docs/adapters.md). Empty: adapters follow"
        " INFERSTACK_ROUTING_POLICY too. The override header still wins (where allow_override is on).",
    )
    allow_override: bool = Field(
        True,
        description="Clients may choose a scheduling profile per request with the x-inferstack-routing-policy"
        " header (any configured profile; an unknown name is a 400). false: only keys with `routing_override:"
        " true` in the key file may; from any other request the header is refused (403 permission_error), so"
        " INFERSTACK_ROUTING_POLICY and adapter_policy route it. The Kubernetes base sets false: a client"
        " choosing round_robin or least_load opts out of the bounded prefix placement the operator chose"
        " (docs/routing.md).",
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
        return self.model_dump(
            exclude={"scrape_interval", "load_max_age", "profiles", "adapter_policy", "allow_override"}
        )

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
        0.5,
        gt=0,
        description="Seconds the engine's /tokenize may take; then the request falls back (no_tokens), or is"
        " routed by the local ids of a tokenizer still on probation.",
    )
    max_blocks: int = Field(512, ge=1, description="Leading prompt blocks hashed per request.")
    max_prompt_chars: int = Field(
        1_000_000,
        ge=1,
        description="Prompts longer than this (characters of content, plus a few per chat message) get no token"
        " ids, locally or from /tokenize: they are routed as no_tokens. Tokenizing costs about a second of a core"
        " per million characters (a 4 MB prompt: 3 s), and no fleet model's context holds such a prompt.",
    )
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
