"""The fake engine's settings: fixed at start (``EngineConfig``) and changeable at run time (``Behaviour``).

``Behaviour`` holds timing and failure injection. Tests flip a running replica to failing with
``POST /_fake/config`` (a JSON object of ``Behaviour`` fields), read it back with ``GET /_fake/config``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from .sim.model import SimParams

FailMode = Literal["close", "error_event", "stall"]
FAIL_MODES: tuple[str, ...] = ("close", "error_event", "stall")


@dataclass
class Behaviour:
    """What each request experiences. Every field can be changed while the engine runs."""

    ttft: float = 0.0
    """Seconds from response headers to the first token (plain mode; the simulator computes its own)."""
    itl: float = 0.0
    """Seconds between tokens (plain mode)."""
    output_tokens: int = 32
    """Tokens generated per request (capped by the request's ``max_tokens``)."""
    first_byte_delay: float = 0.0
    """Fault: seconds before the response headers are sent (a slow first byte)."""
    error_status: int = 0
    """Fault: answer with this HTTP status (e.g. 500) and a vLLM-shaped error body; 0 = off."""
    error_body: str = ""
    """Fault: the body of the ``error_status`` answer, sent as is (e.g. FastAPI's ``{"detail": "Not Found"}``);
    empty: a vLLM-shaped error."""
    error_rate: float = 1.0
    """Share of requests that get ``error_status`` (seeded, so reproducible)."""
    hang: bool = False
    """Fault: read the request and never answer (until the client goes away)."""
    disconnect: bool = False
    """Fault: close the connection abruptly, without any response."""
    fail_after_tokens: int = -1
    """Fault: streams break after this many tokens (-1 = off), in the manner of ``fail_mode``."""
    fail_mode: FailMode = "close"
    """``close``: drop the connection; ``error_event``: send an SSE error event and ``[DONE]``;
    ``stall``: stop sending and keep the connection open."""
    report_running: float | None = None
    """Override for ``vllm:num_requests_running`` on ``/metrics`` (to steer load-aware routing)."""
    report_waiting: float | None = None
    """Override for ``vllm:num_requests_waiting``."""
    report_kv_cache_usage: float | None = None
    """Override for ``vllm:kv_cache_usage_perc`` (0..1)."""
    lora_load_delay: float = 0.0
    """Seconds to load a LoRA adapter into a slot (a runtime load, or a request for an evicted one)."""

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update; raise ValueError naming the first bad field (nothing is changed then)."""
        known = {f.name: f for f in dataclasses.fields(self)}
        staged = dataclasses.replace(self)
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown field {name!r}; known: {', '.join(sorted(known))}")
            setattr(staged, name, _check(name, value))
        for name in changes:
            setattr(self, name, getattr(staged, name))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EngineConfig:
    models: tuple[str, ...] = ("fake-model",)
    """Served model names; the first one labels the metrics (as vLLM's ``--served-model-name``)."""
    max_model_len: int = 8192
    embedding_dim: int = 8
    max_num_seqs: int = 256
    """Plain mode: ``vllm:kv_cache_usage_perc`` reports running / max_num_seqs."""
    record_requests: int = 100
    """How many received requests ``GET /_fake/requests`` keeps (oldest dropped first)."""
    seed: int = 0
    max_loras: int = 0
    """LoRA adapter slots (vLLM ``--max-loras``); 0: no LoRA (``lora.py`` says what is simulated)."""
    lora_modules: tuple[tuple[str, str], ...] = ()
    """Adapters registered at start, (name, path), as ``--lora-modules name=path`` (needs ``max_loras``)."""
    runtime_lora_updating: bool = False
    """Serve ``POST /v1/load_lora_adapter`` (vLLM with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``)."""
    sim: SimParams | None = None
    """Simulator mode (a vLLM replica model) when set; plain mode (fixed TTFT and ITL) when None."""
    behaviour: Behaviour = field(default_factory=Behaviour)
    """Initial behaviour; each app gets its own copy."""


_FLOATS = {"ttft", "itl", "first_byte_delay", "error_rate", "lora_load_delay"}
_OPTIONAL_FLOATS = {"report_running", "report_waiting", "report_kv_cache_usage"}
_INTS = {"output_tokens", "error_status", "fail_after_tokens"}
_BOOLS = {"hang", "disconnect"}


def _check(name: str, value: Any) -> Any:
    if name in _BOOLS:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a boolean")
        return value
    if name == "error_body":
        if not isinstance(value, str):
            raise ValueError("error_body must be a string")
        return value
    if name == "fail_mode":
        if value not in FAIL_MODES:
            raise ValueError(f"fail_mode must be one of {', '.join(FAIL_MODES)}")
        return value
    if name in _OPTIONAL_FLOATS and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if name in _INTS:
        if not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
        if name == "error_status" and value != 0 and not 400 <= value <= 599:
            raise ValueError("error_status must be 0 or an HTTP error status (400-599)")
        if name == "output_tokens" and value < 1:
            raise ValueError("output_tokens must be at least 1")
        return value
    if value < 0 or (name == "error_rate" and value > 1):
        raise ValueError(f"{name} out of range")
    return float(value)
