"""``GET /metrics``: the vLLM series the gateway and the autoscaler read, in Prometheus text format.

Written by hand rather than with prometheus_client: several fake engines share one process in tests,
and a registry per engine buys nothing for a dozen series. Names, labels (``model_name``,
``engine``) and the ``# TYPE`` convention (family name without ``_total``) match vLLM's output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    running: float
    waiting: float
    kv_cache_usage: float
    prompt_tokens: int
    generation_tokens: int
    prefix_queries: int
    prefix_hits: int
    block_size: int
    num_blocks: int


_GAUGES = (
    ("vllm:num_requests_running", "Number of requests in model execution batches.", "running"),
    ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", "waiting"),
    ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", "kv_cache_usage"),
)
_COUNTERS = (
    ("vllm:prompt_tokens", "Number of prefill tokens processed.", "prompt_tokens"),
    ("vllm:generation_tokens", "Number of generation tokens processed.", "generation_tokens"),
    ("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", "prefix_queries"),
    ("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", "prefix_hits"),
)
FINISHED_REASONS = ("stop", "length", "abort", "error")


def render(model_name: str, snap: Snapshot, successes: Mapping[str, int]) -> bytes:
    labels = f'engine="0",model_name="{_escape(model_name)}"'
    lines: list[str] = []
    for name, help_text, attr in _GAUGES:
        lines += [
            f"# HELP {name} {help_text}",
            f"# TYPE {name} gauge",
            f"{name}{{{labels}}} {float(getattr(snap, attr))}",
        ]
    for name, help_text, attr in _COUNTERS:
        lines += [
            f"# HELP {name}_total {help_text}",
            f"# TYPE {name} counter",
            f"{name}_total{{{labels}}} {float(getattr(snap, attr))}",
        ]
    name = "vllm:request_success"
    lines += [f"# HELP {name}_total Count of successfully processed requests.", f"# TYPE {name} counter"]
    for reason in FINISHED_REASONS:
        lines.append(f'{name}_total{{{labels},finished_reason="{reason}"}} {float(successes.get(reason, 0))}')
    name = "vllm:cache_config_info"
    lines += [
        f"# HELP {name} Information of the LLMEngine CacheConfig",
        f"# TYPE {name} gauge",
        f'{name}{{block_size="{snap.block_size}",engine="0",num_gpu_blocks="{snap.num_blocks}"}} 1.0',
    ]
    return ("\n".join(lines) + "\n").encode()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
