"""Recording rules: the quantiles and ratios the dashboards and alerts read.

Naming follows Prometheus' convention ``level:metric:operations``; ``level`` lists the labels kept.
Rates use a 5m window: at a 30s scrape that is 10 samples, enough to survive one missed scrape.
"""

from __future__ import annotations

from ..conventions import KARPENTER_GPU_RESOURCE, KSM_GPU_RESOURCE, QUANTILES

# (recording name, source histogram, labels kept)
GATEWAY_HISTOGRAMS = (
    ("namespace_model:inferstack_time_to_first_token_seconds:histogram_quantile",
     "inferstack_time_to_first_token_seconds", "namespace, model"),
    ("namespace_model:inferstack_inter_token_latency_seconds:histogram_quantile",
     "inferstack_inter_token_latency_seconds", "namespace, model"),
    ("namespace_model:inferstack_request_duration_seconds:histogram_quantile",
     "inferstack_request_duration_seconds", "namespace, model"),
)

VLLM_HISTOGRAMS = tuple(
    (f"namespace_model_name:vllm_{short}:histogram_quantile", f"vllm:{short}", "namespace, model_name")
    for short in (
        "time_to_first_token_seconds",
        "inter_token_latency_seconds",
        "e2e_request_latency_seconds",
        "request_queue_time_seconds",
        "request_prompt_tokens",
        "request_generation_tokens",
    )
)

CACHE_HIT_RATIO = "namespace:inferstack_cache_hits:ratio_rate5m"
PREFIX_CACHE_HIT_RATIO = "namespace_model_name_instance:vllm_prefix_cache_hits:ratio_rate5m"
COST_PER_MILLION_TOKENS = "namespace_model:inferstack_cost_usd_per_million_tokens:ratio_rate1h"
GPU_FLEET_COST = "nodepool:karpenter_gpu_nodes_cost_usd:per_hour"
GPU_POD_PENDING = "namespace_pod:inferstack_gpu_pod_pending:seconds"
# Pods that request a GPU and are Pending, valued by how long they have existed.
GPU_POD_PENDING_EXPR = (
    "max by (namespace, pod) (time() - kube_pod_created)\n"
    ' and on (namespace, pod)\n(max by (namespace, pod) (kube_pod_status_phase{phase="Pending"}) == 1)\n'
    " and on (namespace, pod)\n"
    f'(max by (namespace, pod) (kube_pod_container_resource_requests{{resource="{KSM_GPU_RESOURCE}"}}) > 0)'
)


def _quantiles(record: str, hist: str, by: str) -> list[dict[str, object]]:
    return [
        {
            "record": record,
            "expr": f"histogram_quantile({q}, sum by ({by}, le) (rate({hist}_bucket[5m])))",
            "labels": {"quantile": q},
        }
        for q in QUANTILES
    ]


def gateway_rules() -> list[dict[str, object]]:
    rules: list[dict[str, object]] = []
    for record, hist, by in GATEWAY_HISTOGRAMS:
        rules += _quantiles(record, hist, by)
    rules.append({
        "record": CACHE_HIT_RATIO,
        # "or ... * 0": a cache with lookups but no hit yet has a ratio of 0, not "no data".
        "expr": (
            '(sum by (namespace) (rate(inferstack_cache_requests_total{result="hit"}[5m]))\n'
            " or\n"
            ' 0 * sum by (namespace) (rate(inferstack_cache_requests_total[5m])))\n'
            "/\n"
            'sum by (namespace) (rate(inferstack_cache_requests_total{result=~"hit|miss"}[5m]))'
        ),
    })
    rules.append({
        "record": COST_PER_MILLION_TOKENS,
        "expr": (
            "1e6 * sum by (namespace, model) (rate(inferstack_cost_usd_total[1h]))\n"
            "/\n"
            "(sum by (namespace, model) (rate(inferstack_prompt_tokens_total[1h]))\n"
            " +\n"
            " sum by (namespace, model) (rate(inferstack_completion_tokens_total[1h])))"
        ),
    })
    return rules


def engine_rules() -> list[dict[str, object]]:
    rules: list[dict[str, object]] = []
    for record, hist, by in VLLM_HISTOGRAMS:
        rules += _quantiles(record, hist, by)
    rules.append({
        "record": PREFIX_CACHE_HIT_RATIO,
        # Both counters are in tokens: the share of prompt tokens served from the prefix cache.
        "expr": (
            "sum by (namespace, model_name, instance) (rate(vllm:prefix_cache_hits_total[5m]))\n"
            "/\n"
            "sum by (namespace, model_name, instance) (rate(vllm:prefix_cache_queries_total[5m]))"
        ),
    })
    return rules


def cluster_rules() -> list[dict[str, object]]:
    return [
        {
            "record": GPU_POD_PENDING,
            "expr": GPU_POD_PENDING_EXPR,
        },
        {
            "record": GPU_FLEET_COST,
            # Karpenter's own price estimate per offering, times the GPU nodes it runs of that offering.
            "expr": (
                "sum by (nodepool) (\n"
                "  count by (nodepool, instance_type, capacity_type, zone) (\n"
                f'    karpenter_nodes_allocatable{{resource_type="{KARPENTER_GPU_RESOURCE}"}} > 0)\n'
                "  * on (instance_type, capacity_type, zone) group_left ()\n"
                "  max by (instance_type, capacity_type, zone) "
                "(karpenter_cloudprovider_instance_type_offering_price_estimate)\n"
                ")"
            ),
        },
    ]
