"""``GET /metrics``: the vLLM series the gateway and the autoscaler read, in Prometheus text format.

Written by hand rather than with prometheus_client: several fake engines share one process in tests,
and a registry per engine buys nothing for a dozen series. Names, labels (``model_name``,
``engine``) and the ``# TYPE`` convention (family name without ``_total``) match vLLM's output.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from .lora import Loras


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


def render(model_name: str, snap: Snapshot, successes: Mapping[str, int], loras: Loras | None = None) -> bytes:
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
    if loras is not None:
        lines += _lora_lines(loras)
    return ("\n".join(lines) + "\n").encode()


def _lora_lines(loras: Loras) -> list[str]:
    """vLLM's ``vllm:lora_requests_info`` (one series, valued as vLLM does: the time it was set; vLLM
    also keeps the stale label sets of earlier states, with older times) and the fake's load counter."""
    running = ",".join(a for a, n in loras.running.items() if n > 0)
    waiting = ",".join(a for a, n in loras.waiting.items() if n > 0)
    name = "vllm:lora_requests_info"
    lines = [
        f"# HELP {name} Running stats on lora requests.",
        f"# TYPE {name} gauge",
        f'{name}{{max_lora="{loras.max_loras}",running_lora_adapters="{_escape(running)}",'
        f'waiting_lora_adapters="{_escape(waiting)}"}} {time.time()}',
    ]
    name = "fake_engine_lora_loads"
    lines += [
        f"# HELP {name}_total Adapter loads into a slot since start (runtime loads and swaps).",
        f"# TYPE {name} counter",
    ]
    lines += [f'{name}_total{{lora_name="{_escape(a)}"}} {float(n)}' for a, n in sorted(loras.loads.items())]
    return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
