"""Names both the rules and the dashboards depend on, in one place.

Label conventions (see README "Conventions"):
- every series carries ``namespace``: Kubernetes adds it from the ServiceMonitor/PodMonitor,
  the local Prometheus config adds ``namespace="inferstack"`` as a target label;
- the gateway labels models ``model``; vLLM labels them ``model_name`` (never ``model``);
- a replica is identified by ``instance`` (host:port), present locally and in Kubernetes.
"""

from __future__ import annotations

# Scrape job of the gateway. A ServiceMonitor's job is the Service's name; a PodMonitor's is
# "<namespace>/<name>": the regex accepts both, and nothing else named "gateway" in the cluster.
GATEWAY_JOB = '(.*/)?inferstack-gateway'

# Engine Deployments (and their KEDA ScaledObjects) have "engine" in their name, e.g.
# "engine-tiny-llama" or the base's "vllm-engine", or are the fleet's "vllm-<model slug>"
# (inferstack_fleet). Model names can't be used: "org/Model-3.1" is not a valid object name.
ENGINE_WORKLOAD = '(.*engine.*|vllm-.*)'

# kube-state-metrics sanitises the extended resource "nvidia.com/gpu" to this label value;
# Karpenter keeps the resource name as it is.
KSM_GPU_RESOURCE = 'nvidia_com_gpu'
KARPENTER_GPU_RESOURCE = 'nvidia.com/gpu'

# Python exporters (prometheus_client: gateway and vLLM) print bucket bounds as "2.0";
# Go exporters and Prometheus 3 print "2". Match both.
def le(bound: str) -> str:
    return f'le=~"{bound}(\\\\.0)?"'


QUANTILES = ("0.5", "0.95", "0.99")

# Thresholds shared by alerts and dashboard thresholds.
ENGINE_WAITING_SATURATED = 5  # queue > 5 is the saturation point the llm-d endpoint picker uses
KV_CACHE_FULL = 0.95
GPU_POD_PENDING_SECONDS = 900  # a GPU cold start is 6-8 min on EKS; twice that is a stuck pod
TENANT_BUDGET_WARN = 0.9

# Alerts link here (annotation runbook_url); the runbooks are generated next to the rules.
# Point it at your fork if you publish elsewhere.
RUNBOOK_URL = "https://github.com/inferstack/inferstack/blob/main/observability/RUNBOOKS.md"
