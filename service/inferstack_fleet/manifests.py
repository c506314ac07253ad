"""Kubernetes objects for one catalogued model, derived from the base engine Deployment.

The template is `k8s/base` rendered by kustomize: probes, security context, volumes, the image's
entrypoint and issue 14's KV-event flags come from there, so a change to the base flows into every
model. Only what differs per model is set here: names, labels and selectors, the model and its
weights, the engine knobs, GPU count and placement.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from .catalog import Model
from .hardware import GPU_COUNT_KEYS, GPU_NAME_KEYS

Obj = dict[str, Any]

NAMESPACE = "inferstack"
PROMETHEUS = "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
# Flags this module owns: removed from the template's args and set from the catalog.
OWNED_FLAGS = (
    "--model",
    "--served-model-name",
    "--max-model-len",
    "--gpu-memory-utilization",
    "--tensor-parallel-size",
    "--pipeline-parallel-size",
    "--max-num-seqs",
    "--runner",
    "--enable-lora",
    "--max-loras",
    "--max-lora-rank",
    "--max-cpu-loras",
)
# Adapters live in S3 under the model's lora.adapters_uri; vLLM loads them only from a local path. A
# sidecar mirrors that prefix here, and the gateway's loads point vLLM below it
# (INFERSTACK_ADAPTERS__ROOT: the S3 layout under adapters_uri, on the engine's disk).
ADAPTERS_DIR = "/adapters"
ADAPTER_SYNC_IMAGE = "public.ecr.aws/aws-cli/aws-cli:2.22.0"
ADAPTER_SYNC_SECONDS = 60
# sh as PID 1 ignores SIGTERM: trap it, and sleep in the background so the trap runs at once.
# --exact-timestamps: by default `s3 sync` skips a same-sized object unless the local copy is newer,
# so an object overwritten in S3 (an adapter's weights keep their size) would never reach a pod that
# has the old one. The CLI sets each local file's mtime to the object's, so nothing is fetched twice.
_SYNC_SCRIPT = """\
trap 'exit 0' TERM
while true; do
  if aws s3 sync "$ADAPTERS_S3_URI" "$ADAPTERS_DIR" --delete --exact-timestamps --only-show-errors; then
    touch /tmp/synced
  fi
  sleep "$SYNC_SECONDS" & wait $!
done
"""
# The gateway tokenizes requests itself (issue 14, precise_prefix) from each model's tokenizer files,
# which sit next to the weights under the model's weights URI. An init container copies only those
# (never weights) into an emptyDir, one directory per model, before the gateway starts: the gateway
# loads tokenizers once, at start, and a revision's files never change (a new revision is a new
# manifest, so a new rollout). Best effort: a model whose files do not arrive is tokenized by its
# engines, as before, and inferstack_kv_tokenizer_local says so (the alert InferstackLocalTokenizerFallback).
TOKENIZER_DIR = "/etc/inferstack/tokenizers"
# What kvcache/local_tokenizer.py reads, and what it checks for to refuse a model (a processor's chat
# template, which vLLM would prefer): without them the gateway would render another template than
# the engine. special_tokens_map.json is not read there but is the tokenizer's too (small).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "processor_config.json",
    "preprocessor_config.json",
)
TOKENIZER_SYNC_ATTEMPTS = 3
# The gateway waits for this container: with S3 hanging, no new attempt starts after DEADLINE_SECONDS,
# and one attempt takes at most AWS_MAX_ATTEMPTS x S3_TIMEOUT_SECONDS (the CLI's own retries, each
# with connect and read timeouts): at most 60 + 3 x 10 s.
TOKENIZER_SYNC_DEADLINE_SECONDS = 60
TOKENIZER_SYNC_S3_TIMEOUT_SECONDS = 10
# Each model is synced to a directory of its own beside the target and renamed into place once
# complete: the gateway sees all of a model's files or none (half of them would render another
# template). TOKENIZER_SOURCES names keys, MODELS_BUCKET the bucket (k8s/scripts/aws-cluster-values.sh
# sets the cluster's, as it rewrites the engines' MODEL_S3_URI): no bucket name hides in the list.
# Exit 0 whatever happens: a gateway without a tokenizer still serves (its engines tokenize), one
# that does not start does not.
_TOKENIZER_SYNC_SCRIPT = """\
includes=""
for f in $TOKENIZER_FILES; do includes="$includes --include $f"; done
deadline=$(($(date +%s) + DEADLINE_SECONDS))
printf '%s\\n' "$TOKENIZER_SOURCES" | while read -r model key; do
  [ -n "$model" ] || continue
  uri="s3://$MODELS_BUCKET/$key"
  staging="$TOKENIZER_DIR/.$model.partial"
  attempt=0
  while :; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "tokenizer-sync: $model: no files from $uri after $attempt attempts: its engines tokenize (deadline)"
      break
    fi
    attempt=$((attempt + 1))
    rm -rf "$staging" && mkdir -p "$staging"
    # shellcheck disable=SC2086 # $includes is a list of options
    if aws --cli-connect-timeout "$S3_TIMEOUT_SECONDS" --cli-read-timeout "$S3_TIMEOUT_SECONDS" \\
      s3 sync "$uri" "$staging" --exclude '*' $includes --only-show-errors; then
      rm -rf "${TOKENIZER_DIR:?}/$model"
      mv "$staging" "$TOKENIZER_DIR/$model"
      echo "tokenizer-sync: $model: $(ls "$TOKENIZER_DIR/$model" | tr '\\n' ' ')from $uri"
      break
    fi
    if [ "$attempt" -ge "$ATTEMPTS" ]; then
      rm -rf "$staging"
      echo "tokenizer-sync: $model: no files from $uri after $attempt attempts: its engines tokenize"
      break
    fi
    sleep "$RETRY_SECONDS"
  done
done
rm -rf "$TOKENIZER_DIR"/.*.partial
exit 0
"""


# The template's way of naming the fetch in the init container (before the image's entrypoint
# streamed weights itself); replaced by the model's URI.
_FETCH_SOURCE = "s3://${MODELS_BUCKET}/models/${MODEL_DIR}/"


class TemplateError(Exception):
    """The base engine Deployment no longer has what the generator patches."""


def object_name(model: Model) -> str:
    return f"vllm-{model.slug}"


def labels(model: Model) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "vllm-engine",
        "app.kubernetes.io/component": "engine",
        "app.kubernetes.io/part-of": "inferstack",
        "app.kubernetes.io/instance": object_name(model),
        "inferstack.dev/model": model.name,
    }


def _metadata(model: Model) -> Obj:
    return {"name": object_name(model), "namespace": NAMESPACE, "labels": labels(model)}


def selector(model: Model) -> dict[str, str]:
    return {"app.kubernetes.io/name": "vllm-engine", "inferstack.dev/model": model.name}


def _set_env(env: list[Obj], name: str, value: str) -> None:
    for var in env:
        if var["name"] == name:
            var.clear()
            var.update(name=name, value=value)
            return
    env.append({"name": name, "value": value})


def _scale_quantity(quantity: str, factor: int) -> str:
    match = re.fullmatch(r"(\d+)(\D*)", str(quantity))
    if not match:
        raise TemplateError(f"cannot scale the resource quantity {quantity!r}")
    return f"{int(match[1]) * factor}{match[2]}"


def engine_args(model: Model, template_args: list[str]) -> list[str]:
    kept = [a for a in template_args if a.split("=", 1)[0] not in OWNED_FLAGS]
    hw, engine = model.hardware, model.engine
    args = [
        f"--max-model-len={engine.max_model_len}",
        f"--gpu-memory-utilization={engine.gpu_memory_utilization}",
        f"--tensor-parallel-size={hw.tp}",
        f"--max-num-seqs={engine.max_num_seqs}",
    ]
    if hw.pipeline_parallel > 1:
        args.append(f"--pipeline-parallel-size={hw.pipeline_parallel}")
    if model.task == "embed":
        args.append("--runner=pooling")
    if model.lora is not None:
        args += ["--enable-lora", f"--max-loras={model.lora.max_loras}", f"--max-lora-rank={model.lora.max_rank}"]
        if model.lora.max_cpu_loras is not None:
            args.append(f"--max-cpu-loras={model.lora.max_cpu_loras}")
    return args + kept + list(engine.extra_args)


def adapter_sync(model: Model) -> Obj:
    """A native sidecar (an init container that keeps running) mirroring the model's adapters to the
    shared ``adapters`` volume every minute. Its startup probe passes after the first complete sync,
    and the engine container starts only then: a load the gateway sends finds the files."""
    assert model.lora is not None
    env = [
        {"name": "ADAPTERS_S3_URI", "value": model.lora.adapters_uri},
        {"name": "ADAPTERS_DIR", "value": ADAPTERS_DIR},
        {"name": "SYNC_SECONDS", "value": str(ADAPTER_SYNC_SECONDS)},
    ]
    mounts = [{"name": "adapters", "mountPath": ADAPTERS_DIR}, {"name": "adapter-sync-tmp", "mountPath": "/tmp"}]
    container = _aws_cli("adapter-sync", _SYNC_SCRIPT, env, mounts)
    container["restartPolicy"] = "Always"
    container["startupProbe"] = {
        "exec": {"command": ["test", "-f", "/tmp/synced"]},
        "periodSeconds": 5,
        "failureThreshold": 120,
    }
    # Restarted if syncs stop succeeding for long: the marker is refreshed on every good sync.
    container["livenessProbe"] = {
        "exec": {"command": ["/bin/sh", "-c", 'test -n "$(find /tmp/synced -mmin -15)"']},
        "periodSeconds": 60,
        "failureThreshold": 3,
    }
    container["readinessProbe"] = {"exec": {"command": ["test", "-f", "/tmp/synced"]}, "periodSeconds": 30}
    return container


def _aws_cli(name: str, script: str, env: list[Obj], mounts: list[Obj]) -> Obj:
    """A container running ``script`` with the AWS CLI image, restricted, HOME on its /tmp mount."""
    return {
        "name": name,
        "image": ADAPTER_SYNC_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c"],
        "args": [script],
        # HOME: the CLI's cache; the root filesystem is read-only.
        "env": [*env, {"name": "HOME", "value": "/tmp"}],
        "resources": {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "512Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }


def tokenizer_models(models: list[Model]) -> list[Model]:
    """The models the gateway tokenizes: text generation only (embedding requests are not routed by
    prefix; vLLM's pooling runner tokenizes them itself)."""
    return sorted((m for m in models if m.task == "generate"), key=lambda m: m.name)


def tokenizer_dirs(models: list[Model]) -> dict[str, str]:
    """INFERSTACK_KV_EVENTS__LOCAL_TOKENIZER__DIRS: where the init container puts each model's files."""
    return {m.name: f"{TOKENIZER_DIR}/{m.name}" for m in tokenizer_models(models)}


def tokenizer_sync(models: list[Model]) -> Obj:
    """The gateway's init container copying each generating model's tokenizer files from its weights URI."""
    chosen = tokenizer_models(models)
    buckets = {m.source.weights_uri.removeprefix("s3://").partition("/")[0] for m in chosen}
    if len(buckets) > 1:
        # As the cluster values do for the engines: one model bucket per cluster.
        raise TemplateError(f"the generating models' weights are in several buckets ({sorted(buckets)}): use one")
    sources = "".join(f"{m.name} {m.source.weights_uri.removeprefix('s3://').partition('/')[2]}\n" for m in chosen)
    env = [
        {"name": "TOKENIZER_SOURCES", "value": sources},
        {"name": "TOKENIZER_FILES", "value": " ".join(TOKENIZER_FILES)},
        {"name": "TOKENIZER_DIR", "value": TOKENIZER_DIR},
        # The catalog's bucket; aws-cluster-values.sh sets the cluster's.
        {"name": "MODELS_BUCKET", "value": "".join(buckets)},
        {"name": "ATTEMPTS", "value": str(TOKENIZER_SYNC_ATTEMPTS)},
        {"name": "RETRY_SECONDS", "value": "5"},
        {"name": "DEADLINE_SECONDS", "value": str(TOKENIZER_SYNC_DEADLINE_SECONDS)},
        {"name": "S3_TIMEOUT_SECONDS", "value": str(TOKENIZER_SYNC_S3_TIMEOUT_SECONDS)},
        # A dead endpoint costs seconds, not the CLI's default minute per attempt.
        {"name": "AWS_MAX_ATTEMPTS", "value": "3"},
    ]
    mounts = [
        {"name": "tokenizers", "mountPath": TOKENIZER_DIR},
        {"name": "tokenizer-sync-tmp", "mountPath": "/tmp"},
    ]
    # The AWS CLI image the engines' adapter-sync runs (one mirror for both).
    return _aws_cli("tokenizer-sync", _TOKENIZER_SYNC_SCRIPT, env, mounts)


def _serve_adapters(pod_spec: Obj, vllm: Obj, model: Model) -> None:
    """Runtime loading allowed (the gateway POSTs /v1/load_lora_adapter), adapters on a shared volume."""
    _set_env(vllm["env"], "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")
    vllm.setdefault("volumeMounts", []).append({"name": "adapters", "mountPath": ADAPTERS_DIR, "readOnly": True})
    pod_spec.setdefault("initContainers", []).append(adapter_sync(model))
    pod_spec.setdefault("volumes", []).extend(
        [
            {"name": "adapters", "emptyDir": {"sizeLimit": "10Gi"}},
            {"name": "adapter-sync-tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        ]
    )


def _place_model(spec: Obj, vllm: Obj, model: Model) -> None:
    """Put the model's name and weights where the template expects them, or fail loudly."""
    env = vllm.setdefault("env", [])
    names = {v["name"] for v in env}
    if "MODEL_S3_URI" in names:
        # The image's entrypoint streams MODEL_S3_URI and serves it as MODEL_NAME.
        _set_env(env, "MODEL_S3_URI", model.source.weights_uri)
        _set_env(env, "MODEL_NAME", model.name)
        return
    fetch = next((c for c in spec.get("initContainers", []) if c["name"] == "fetch-model"), None)
    script = "\n".join(fetch.get("args", [])) if fetch else ""
    if fetch is None or _FETCH_SOURCE not in script:
        raise TemplateError("the engine template has neither a MODEL_S3_URI env var nor the fetch-model copy")
    fetch["args"] = [a.replace(_FETCH_SOURCE, "${MODEL_S3_URI}") for a in fetch["args"]]
    _set_env(fetch.setdefault("env", []), "MODEL_S3_URI", model.source.weights_uri)
    _set_env(fetch["env"], "MODEL_DIR", model.slug)
    vllm["args"] = [f"--model=/model-cache/{model.slug}", f"--served-model-name={model.name}", *vllm["args"]]


def gpu_affinity(model: Model, template_terms: list[Obj]) -> list[Obj]:
    """The template's node requirements plus the GPU's name and count, once per label family
    (Karpenter's and Auto Mode's): ORed terms, so one manifest fits either kind of cluster."""
    base = template_terms[0].get("matchExpressions", []) if template_terms else []
    terms = []
    for name_key, count_key in zip(GPU_NAME_KEYS, GPU_COUNT_KEYS, strict=True):
        gpu = [
            {"key": name_key, "operator": "In", "values": [model.hardware.gpu]},
            {"key": count_key, "operator": "In", "values": [str(model.hardware.count)]},
        ]
        terms.append({"matchExpressions": copy.deepcopy(base) + gpu})
    return terms


def deployment(model: Model, template: Obj) -> Obj:
    obj = copy.deepcopy(template)
    obj["metadata"]["name"] = object_name(model)
    obj["metadata"].setdefault("labels", {}).update(labels(model))
    obj["metadata"].setdefault("annotations", {})["inferstack.dev/model-revision"] = model.source.revision
    spec = obj["spec"]
    spec["selector"] = {"matchLabels": selector(model)}
    pod = spec["template"]
    pod["metadata"].setdefault("labels", {}).update(labels(model))
    pod_spec = pod["spec"]
    for constraint in pod_spec.get("topologySpreadConstraints", []):
        constraint["labelSelector"] = {"matchLabels": selector(model)}
    vllm = next((c for c in pod_spec["containers"] if c["name"] == "vllm"), None)
    if vllm is None:
        raise TemplateError("the engine template has no container named vllm")
    vllm["args"] = engine_args(model, list(vllm.get("args", [])))
    _place_model(pod_spec, vllm, model)
    if model.lora is not None:
        _serve_adapters(pod_spec, vllm, model)
        # What k8s/scripts/aws-cluster-values.sh selects to rewrite the sidecar's bucket per cluster.
        obj["metadata"]["labels"]["inferstack.dev/adapter-sync"] = "true"
    count = model.hardware.count
    for bound in ("requests", "limits"):
        resources = vllm["resources"][bound]
        for key in ("cpu", "memory"):
            if key in resources:
                resources[key] = _scale_quantity(resources[key], count)
        resources["nvidia.com/gpu"] = str(count)
    node_affinity = pod_spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    required["nodeSelectorTerms"] = gpu_affinity(model, required.get("nodeSelectorTerms", []))
    pod_spec["priorityClassName"] = priority_class_name(model.priority)
    return obj


def priority_class_name(priority: int) -> str:
    return f"inferstack-engine-priority-{priority}"


def priority_class(priority: int) -> Obj:
    """The catalog's ``priority`` as the scheduler knows it. When GPUs are short (the NodePool's limit
    reached, or no capacity for the instance type), a pending replica of a higher-priority model
    preempts replicas of lower-priority ones from nodes where it fits, PDBs respected as far as the
    scheduler can. Values are the priorities themselves (0-100): far below the system classes, and a
    model at 0 ranks with pods that name no class."""
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {
            "name": priority_class_name(priority),
            "labels": {"app.kubernetes.io/part-of": "inferstack", "app.kubernetes.io/component": "engine"},
        },
        "value": priority,
        "globalDefault": False,
        "preemptionPolicy": "PreemptLowerPriority",
        "description": f"inferstack engines of catalog priority {priority} (fleet/models/*.yaml)",
    }


def service(model: Model, template: Obj) -> Obj:
    """Headless, one model's replicas only: for per-model debugging and discovery. The gateway's
    own Service (`vllm-engine`, every engine) stays as it is."""
    ports = next(c for c in template["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm")["ports"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(model),
        "spec": {
            "clusterIP": "None",
            "selector": selector(model),
            "ports": [
                {"name": p["name"], "port": p["containerPort"], "targetPort": p["name"], "protocol": "TCP"}
                for p in ports
            ],
        },
    }


def pdb(model: Model) -> Obj:
    # maxUnavailable, not minAvailable: with zero or one replica minAvailable blocks every drain.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(model),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(model)}},
    }


def _trigger(name: str, query: str, threshold: int) -> Obj:
    return {
        "type": "prometheus",
        "name": name,
        "metricType": "AverageValue",
        # KEDA asks Prometheus once per pollingInterval and the HPA reads the cached value, so
        # many models do not multiply the queries.
        "useCachedMetrics": True,
        "metadata": {
            "serverAddress": PROMETHEUS,
            "query": query,
            "threshold": str(threshold),
            "activationThreshold": "0",
        },
    }


def _demand_selector(model: Model, adapter_versions: list[str]) -> str:
    """The gateway counts demand under the name it routes by: the model's, and each adapter version's."""
    if not adapter_versions:
        return f'model="{model.name}"'
    # A PromQL regex (fully anchored) in a double-quoted string: a literal dot is \\. (names are
    # [a-z0-9.-] and @, so the dot is the only character to escape).
    names = "|".join(n.replace(".", "\\\\.") for n in [model.name, *sorted(adapter_versions)])
    return f'model=~"{names}"'


def scaled_object(model: Model, adapter_versions: list[str]) -> Obj:
    """The model's own queue (vLLM's label is model_name; requests for its adapters count there too)
    and the gateway's demand for it and its adapters (which exists at zero replicas, so it wakes the
    model). Each in sum(...) or vector(0): exactly one element."""
    s = model.scaling
    selector_ns = f'namespace="{NAMESPACE}"'
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(model),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": object_name(model)},
            "minReplicaCount": s.min,
            "maxReplicaCount": s.max,
            "pollingInterval": 15,
            "cooldownPeriod": s.idle_seconds,
            # Prometheus unreachable for 3 polls: keep the current count, and at least one.
            "fallback": {"failureThreshold": 3, "replicas": max(s.min, 1), "behavior": "currentReplicasIfHigher"},
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {
                            "stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
                        },
                        "scaleDown": {
                            "stabilizationWindowSeconds": 600,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
                        },
                    }
                }
            },
            "triggers": [
                _trigger(
                    "engine-queue",
                    f'sum(vllm:num_requests_waiting{{{selector_ns},model_name="{model.name}"}}) or vector(0)',
                    s.targets.queue_per_replica,
                ),
                _trigger(
                    "gateway-demand",
                    f"sum(inferstack_model_demand{{{selector_ns},{_demand_selector(model, adapter_versions)}}})"
                    " or vector(0)",
                    s.targets.demand_per_replica,
                ),
            ],
        },
    }
