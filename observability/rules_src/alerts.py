"""Operational alerts (the SLO burn-rate alerts are in slo.py). Each carries runbook text."""

from __future__ import annotations

from ..conventions import (
    ENGINE_WAITING_SATURATED,
    GATEWAY_JOB,
    GPU_POD_PENDING_SECONDS,
    KV_CACHE_FULL,
    TENANT_BUDGET_WARN,
)
from .recording import GPU_POD_PENDING_EXPR

# Long enough for a model on probation with steady traffic to have passed a check (8 requests).
_TOKENIZER_WINDOW = "30m"


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str,
           runbook: str) -> dict[str, object]:
    rule: dict[str, object] = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary, "description": description, "runbook": runbook}
    return rule


def alert_rules() -> list[dict[str, object]]:
    return [
        _alert(
            "InferstackEngineSaturated",
            f"max by (namespace, model_name, instance) (vllm:num_requests_waiting) > {ENGINE_WAITING_SATURATED}",
            "5m", "warning",
            "Engine {{ $labels.instance }} ({{ $labels.model_name }}) has had a queue for 5 minutes",
            f"{{{{ $value }}}} requests waiting (threshold {ENGINE_WAITING_SATURATED}): TTFT grows with the queue.",
            "1. 'Capacity' dashboard: is the autoscaler's input above its threshold, are replicas "
            "pending? A pending GPU pod means no node: see InferstackGPUPodPendingTooLong.\n"
            "2. One replica queued while others idle: routing imbalance; check "
            "inferstack_routing_decisions_total by reason (load_bound should appear).\n"
            "3. All replicas queued at max replicas: raise the ScaledObject's maxReplicaCount or "
            "the GPU NodePool's limits.",
        ),
        _alert(
            "InferstackKVCacheNearlyFull",
            f"max by (namespace, model_name, instance) (vllm:kv_cache_usage_perc) > {KV_CACHE_FULL}",
            "5m", "warning",
            "KV cache of {{ $labels.instance }} ({{ $labels.model_name }}) above 95 % for 5 minutes",
            "KV-cache usage {{ $value | humanizePercentage }}: new requests wait and running ones get "
            "preempted (vllm:num_preemptions_total).",
            "1. 'Engines' dashboard: preemptions and prompt lengths. Longer prompts than planned "
            "need more KV blocks.\n"
            "2. Lower --max-num-seqs or --max-model-len, or raise --gpu-memory-utilization.\n"
            "3. Add replicas: lower the autoscaler threshold so scale-out starts earlier.",
        ),
        _alert(
            "InferstackModelUnavailable",
            "(sum by (namespace, model) (inferstack_model_demand) > 0)\n"
            " unless on (namespace, model)\n"
            '(sum by (namespace, model) (inferstack_upstream_replicas{state="ready"}) > 0)',
            "10m", "critical",
            "Model {{ $labels.model }} has demand and no ready replica for 10 minutes",
            "{{ $value }} requests held or in flight; the gateway holds them up to "
            "INFERSTACK_HOLD_TIMEOUT, then answers 503. A cold start takes 6-8 min on EKS.",
            "1. kubectl get pods for the model's engine Deployment: Pending means no GPU node "
            "(check Karpenter's logs and NodePool limits, GPU quota in the region); "
            "CrashLoopBackOff means the engine fails to start (its logs: model download, OOM).\n"
            "2. Replicas at 0 with demand: KEDA did not scale from zero; check the ScaledObject's "
            "status and that its query returns the gateway's inferstack_model_demand.\n"
            "3. Replicas Running but not ready in the gateway: outlier ejection or discovery; see "
            "inferstack_upstream_replicas by state.",
        ),
        _alert(
            "InferstackGPUPodPendingTooLong",
            # The expression itself, not its recording rule: that lives in another group, which
            # Prometheus (and promtool, in random order) may evaluate after this one, and the
            # summary's duration would then be a minute old.
            f"({GPU_POD_PENDING_EXPR})\n> {GPU_POD_PENDING_SECONDS}",
            "", "warning",
            "GPU pod {{ $labels.namespace }}/{{ $labels.pod }} Pending for {{ $value | humanizeDuration }}",
            f"A pod requesting a GPU has been Pending for more than {GPU_POD_PENDING_SECONDS // 60} "
            "minutes, twice a normal cold start.",
            "1. kubectl describe pod: scheduling events tell whether no node fits (taints, "
            "tolerations, NodePool requirements) or the image is still pulling.\n"
            "2. Karpenter logs / NodeClaims: insufficient capacity for the instance types, NodePool "
            "limits on nvidia.com/gpu reached, or EC2 GPU quota (vCPU limit for G/P instances).\n"
            "3. Widen the NodePool's instance types or zones, or allow on-demand next to spot.",
        ),
        _alert(
            "InferstackUpstreamEjections",
            "sum by (namespace, model) (increase(inferstack_upstream_ejections_total[15m])) > 2",
            "", "warning",
            "Replicas of {{ $labels.model }} keep being ejected by outlier detection",
            "{{ $value | humanize }} ejections in 15 minutes: replicas fail requests repeatedly.",
            "1. inferstack_upstream_errors_total by kind: timeout (engine overloaded or stuck), "
            "connect (pod dying), http_5xx (engine errors: its logs).\n"
            "2. 'Engines' dashboard: the ejected instance's KV cache, queue and preemptions.\n"
            "3. Delete a stuck pod; if all replicas are ejected in turn, look for a bad release.",
        ),
        _alert(
            "InferstackGatewayDown",
            f'absent(up{{job=~"{GATEWAY_JOB}"}} == 1)',
            "2m", "critical",
            "No inferstack gateway target is up",
            "Prometheus has not scraped any gateway for 2 minutes: clients probably get no answer.",
            "1. kubectl get pods -l app.kubernetes.io/name=inferstack-gateway; describe crashing "
            "pods, read their logs (settings are validated at start: the log names a bad field).\n"
            "2. Pods Running but not scraped: check the ServiceMonitor's selector and port name.\n"
            "3. Roll back the last gateway release.",
        ),
        _alert(
            "InferstackGatewayTargetDown",
            f'up{{job=~"{GATEWAY_JOB}"}} == 0',
            "5m", "warning",
            "Gateway {{ $labels.instance }} is not scraped",
            "One gateway replica fails its scrape for 5 minutes; others may still serve.",
            "1. Is the pod restarting (liveness under load, OOMKilled)? kubectl describe pod.\n"
            "2. /metrics slow or failing: the gateway's logs around the scrape times.",
        ),
        _alert(
            "InferstackTenantBudgetNearlySpent",
            f"max by (namespace, tenant) (inferstack_tenant_budget_used_ratio) > {TENANT_BUDGET_WARN}",
            "5m", "warning",
            "Tenant {{ $labels.tenant }} has used {{ $value | humanizePercentage }} of its monthly budget",
            "At 100 % the gateway rejects the tenant's requests with 429 (limit=\"budget\").",
            "1. 'Cost and tenants' dashboard: the tenant's spend rate, which models.\n"
            "2. Tell the tenant's owner; raise the budget in the key file if agreed "
            "(INFERSTACK_KEYS_FILE is reloaded on change, no restart).",
        ),
        _alert(
            "InferstackGatewayTaskEnded",
            "sum by (namespace, pod, task) (increase(inferstack_background_task_failures_total[10m])) > 0",
            "", "warning",
            "Gateway {{ $labels.pod }}: background task {{ $labels.task }} ended",
            "A lifespan task (discovery, the engine load scraper, the Redis health check, a file watcher) "
            "stopped while the gateway ran. Its /healthz and /readyz now fail, so the kubelet restarts "
            "it and traffic leaves it meanwhile; repeated alerts mean the restart does not cure it.",
            "1. The pod's logs: 'background task ... ended' carries the exception and its traceback.\n"
            "2. /healthz on the pod (port http) names the task and why it ended.\n"
            "3. Restarts that keep coming back (kubectl get pods: RESTARTS): the cause is outside the "
            "process (the Kubernetes API, Redis, a key or price file); fix that, then file the traceback.",
        ),
        _alert(
            "InferstackDiscoveryFailing",
            # Every 5-minute window of the last 10 minutes had failed lookups: not a blip (the k8s
            # provider retries every 10 s at most, DNS every interval), a discovery that stays broken.
            "sum by (namespace, pod, provider) (increase(inferstack_discovery_errors_total[5m])) > 0",
            "10m", "warning",
            "Gateway {{ $labels.pod }}: {{ $labels.provider }} discovery has failed for 10 minutes",
            "The gateway routes to the replicas it knew before the failures: pods started since get no "
            "traffic, and pods gone since get requests that fail and are retried elsewhere.",
            "1. The pod's logs: 'k8s discovery: ...' (the API's status and message) or 'dns discovery: "
            "resolving ... failed'.\n"
            "2. k8s: a 401/403 is the service account's token or RBAC (get, list, watch on "
            "endpointslices in the namespace); a timeout is the API server or a network policy.\n"
            "3. dns: the cluster DNS (CoreDNS pods, their logs) and the headless Service's name.",
        ),
        _alert(
            "InferstackLocalTokenizerFallback",
            # Per gateway (instance) and model: the gateway's own tokenizer is not in use (files missing,
            # switched off, or never past its checks), the model had requests there, the gateway asked
            # engines' /tokenize (so precise_prefix tokenizes), and no check of the model agreed with
            # an engine (which a model on probation with traffic would show).
            "(max by (namespace, instance, model) (inferstack_kv_tokenizer_local) == 0)\n"
            "and on (namespace, instance, model)\n"
            f"(sum by (namespace, instance, model) (increase(inferstack_requests_total[{_TOKENIZER_WINDOW}])) > 0)\n"
            "and on (namespace, instance)\n"
            "(sum by (namespace, instance) "
            f"(increase(inferstack_kv_tokenize_seconds_count[{_TOKENIZER_WINDOW}])) > 0)\n"
            "unless on (namespace, instance, model)\n"
            "(sum by (namespace, instance, model) "
            f'(increase(inferstack_kv_tokenizer_checks_total{{outcome="same"}}[{_TOKENIZER_WINDOW}])) > 0)',
            "15m", "warning",
            "Gateway {{ $labels.instance }} tokenizes {{ $labels.model }} with the engines' /tokenize",
            "precise_prefix routing asks an engine for the token ids of every request of this model (an "
            "HTTP call in front of each request, competing with the engine's own work; past "
            "INFERSTACK_KV_EVENTS__TOKENIZE_TIMEOUT the request falls back, reason no_tokens) instead of "
            "tokenizing it in the gateway: the model's tokenizer files did not load, or its tokenizer was "
            "switched off after a difference or an error.",
            "1. The gateway pod's log: 'local tokenizer not loaded' (with the error: files missing or "
            "refused), 'local tokenizer differs from the engine's /tokenize' (see "
            "InferstackLocalTokenizerDiffers) or 'local tokenizer failed' (a traceback).\n"
            "2. Files missing in Kubernetes: the init container's log, "
            "kubectl logs <gateway pod> -c tokenizer-sync: 'no files from s3://... after N attempts' is "
            "S3 refusing (the gateway role's Pod Identity association, its grant on the tokenizer files: "
            "terraform/modules/models/gateway_role.tf) or unreachable; a model listed with no file names "
            "means its weights prefix holds no tokenizer.json / tokenizer_config.json: upload them next to "
            "the weights (aws s3 cp) and restart the gateways (kubectl rollout restart "
            "deploy/inferstack-gateway).\n"
            "3. Requests the local tokenizer never renders (tools, documents, images) always ask the "
            "engine: with only such traffic this alert is expected; silence it for the model.",
        ),
        _alert(
            "InferstackLocalTokenizerDiffers",
            'sum by (namespace, model) (increase(inferstack_kv_tokenizer_checks_total{outcome="differ"}[1h])) > 0',
            "", "warning",
            "The gateway's tokenizer for {{ $labels.model }} gave other token ids than its engine",
            "A check in the last hour compared the gateway's ids with the engine's /tokenize and found "
            "them different. Each gateway that saw a difference "
            "tokenizes this model with the engines' /tokenize until it restarts. Requests it routed by its "
            "own ids before then were hashed from other tokens than the engine caches.",
            "1. The gateway's log line 'local tokenizer differs from the engine's /tokenize' gives the "
            "position of the first differing token and both lengths.\n"
            "2. Compare what the engine runs with the files the gateway got: an engine started with "
            "--chat-template, files uploaded at another revision than the weights, a processor's chat "
            "template, or a vLLM upgrade that renders differently (docs/routing.md, 'Tokenization').\n"
            "3. Until fixed, INFERSTACK_KV_EVENTS__TOKENIZER=engine for every model; after fixing the "
            "files, restart the gateways: each checks its first requests against the engine again.",
        ),
        _alert(
            "InferstackRedisUnavailable",
            'count by (namespace) (inferstack_dependency_up{dependency="redis"} == 0) > 0',
            "1m", "critical",
            "{{ $value }} gateway(s) in {{ $labels.namespace }} cannot reach Redis",
            "Each feature applies its failure policy (INFERSTACK_TENANCY__REDIS__*): fail-open features "
            "serve without limits, budget checks, cache or Idempotency-Key guarantees and spend is not "
            "recorded; fail-closed ones answer 503 and /readyz fails. Each gateway routes LoRA adapters on "
            "its own record of where they are (feature adapters).",
            "1. inferstack_dependency_errors_total by feature: which features are affected, and since when.\n"
            "2. Is Redis running and reachable from the gateway pods? kubectl get pods for Redis (or the "
            "ElastiCache console), then from a gateway pod: redis-cli -u $INFERSTACK_REDIS_URL ping.\n"
            "3. Hung rather than down (PING times out): Redis CPU, memory (maxmemory, evictions) and slow "
            "log; a NetworkPolicy change that drops traffic looks the same.\n"
            "4. Once Redis answers, gateways mark it up within INFERSTACK_TENANCY__REDIS__CHECK_INTERVAL "
            "seconds; usage made while it was down is missing from /admin/usage.",
        ),
    ]
