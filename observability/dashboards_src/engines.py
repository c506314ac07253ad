"""Engines: vLLM's own view, per replica. Current v1 metric names only (see FIELD-NOTES.md)."""

from __future__ import annotations

from typing import Any

from ..conventions import ENGINE_WAITING_SATURATED, KV_CACHE_FULL
from ..rules_src.recording import PREFIX_CACHE_HIT_RATIO, VLLM_HISTOGRAMS
from .common import VLLM, Board, Q, distribution, ts

UID = "inferstack-engines"
_RATE = "$__rate_interval"
_Q = {source.removeprefix("vllm:"): record for record, source, _ in VLLM_HISTOGRAMS}
_REPLICA = "{{model_name}} {{instance}}"


def build() -> dict[str, Any]:
    b = Board(UID, "inferstack / Engines",
              "vLLM replicas: load, KV cache, prefix cache, the engine's own latencies, request shapes.",
              ["vllm", "engines"])

    b.row("Load per replica")
    b.add(ts("Running requests",
             Q(f"sum by (model_name, instance) (vllm:num_requests_running{{{VLLM}}})", _REPLICA)))
    b.add(ts("Waiting requests",
             Q(f"sum by (model_name, instance) (vllm:num_requests_waiting{{{VLLM}}})", _REPLICA),
             description="Queued in the engine. Saturation alert above "
                         f"{ENGINE_WAITING_SATURATED} for 5 minutes.",
             thresholds=[(None, "green"), (ENGINE_WAITING_SATURATED, "red")]))
    b.add(ts("KV-cache usage",
             Q(f"max by (model_name, instance) (vllm:kv_cache_usage_perc{{{VLLM}}})", _REPLICA),
             unit="percentunit", max_=1,
             thresholds=[(None, "green"), (0.8, "orange"), (KV_CACHE_FULL, "red")]))
    b.add(ts("Prefix-cache hit ratio",
             Q(f"{PREFIX_CACHE_HIT_RATIO}{{{VLLM}}}", _REPLICA), unit="percentunit", max_=1,
             description="Share of prompt tokens served from the prefix cache (vLLM counts tokens)."))
    b.add(ts("Preemptions",
             Q(f"sum by (model_name, instance) (rate(vllm:num_preemptions_total{{{VLLM}}}[{_RATE}]))", _REPLICA),
             unit="ops", description="Sequences evicted from the KV cache to make room: KV cache too small."))
    b.add(ts("Tokens per second",
             Q(f"sum by (model_name, instance) (rate(vllm:prompt_tokens_total{{{VLLM}}}[{_RATE}]))",
               _REPLICA + " prompt"),
             Q(f"sum by (model_name, instance) (rate(vllm:generation_tokens_total{{{VLLM}}}[{_RATE}]))",
               _REPLICA + " generation")))

    b.row("Latency inside the engine")
    for title, key in (
        ("Time to first token (engine)", "time_to_first_token_seconds"),
        ("Inter-token latency (engine)", "inter_token_latency_seconds"),
        ("End-to-end latency (engine)", "e2e_request_latency_seconds"),
        ("Queue time", "request_queue_time_seconds"),
    ):
        b.add(ts(title, Q(f"{_Q[key]}{{{VLLM}}}", "{{model_name}} p{{quantile}}"), unit="s"), w=6)

    b.row("Requests")
    b.add(distribution(
        "Prompt length distribution",
        Q(f"sum by (le) (increase(vllm:request_prompt_tokens_bucket{{{VLLM}}}[$__range]))"),
        description="Requests per prompt-length bucket (tokens) over the dashboard's time range."))
    b.add(distribution(
        "Generation length distribution",
        Q(f"sum by (le) (increase(vllm:request_generation_tokens_bucket{{{VLLM}}}[$__range]))"),
        description="Requests per generated-length bucket (tokens) over the dashboard's time range."))
    b.add(ts("Finish reasons",
             Q(f"sum by (finished_reason) (rate(vllm:request_success_total{{{VLLM}}}[{_RATE}]))",
               "{{finished_reason}}"),
             unit="reqps", stack=True,
             description="length: cut by max_tokens; abort: client went away; error: engine failure."))
    b.add(ts("Prompt and generation length",
             Q(f"{_Q['request_prompt_tokens']}{{{VLLM}}}", "prompt p{{quantile}}"),
             Q(f"{_Q['request_generation_tokens']}{{{VLLM}}}", "generation p{{quantile}}")), w=24, h=7)
    return b.json()
