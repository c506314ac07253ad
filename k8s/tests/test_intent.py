"""What the manifests are for, checked on the rendered overlays: the mistakes schemas cannot see."""

from __future__ import annotations

import json
import re

from .manifests import (
    GPU_OVERLAYS,
    REPO,
    Obj,
    containers,
    engine_names,
    engines,
    env,
    find,
    matches,
    one,
    pod_specs,
    vllm,
    workloads,
)

GPU = "nvidia.com/gpu"
_env = env


def _config(objs: list[Obj]) -> dict[str, str]:
    (cm,) = [c for c in find(objs, "ConfigMap") if c["metadata"]["name"].startswith("inferstack-gateway")]
    return dict(cm["data"])


def _served_model(engine: Obj) -> str:
    """MODEL_NAME for the GPU image's entrypoint; --served-model-name where the image takes it."""
    c = vllm(engine)
    names = {a.split("=", 1)[1] for a in c["args"] if a.startswith("--served-model-name=")}
    names |= {v for k, v in _env(c).items() if k == "MODEL_NAME"}
    (name,) = names
    return name


def _served_models(objs: list[Obj]) -> set[str]:
    return {_served_model(e) for e in engines(objs)}


def test_every_container_has_requests_limits_and_probes(objs: list[Obj]) -> None:
    for workload, spec in pod_specs(objs):
        for c in containers(spec):
            where = f"{workload['metadata']['name']}/{c['name']}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c.get("resources", {}).get(kind, {})), f"{where}: {kind}"
            if c in spec["containers"]:
                assert {"readinessProbe", "livenessProbe"} <= set(c), f"{where}: probes"


def test_every_container_is_restricted(objs: list[Obj]) -> None:
    """Pod Security 'restricted' plus a read-only root filesystem, everywhere."""
    for workload, spec in pod_specs(objs):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["runAsUser"] != 0
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], c["name"]
            assert not sc.get("privileged"), c["name"]
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        assert all("hostPath" not in v for v in spec.get("volumes", [])), workload["metadata"]["name"]
    ns = one(objs, "Namespace", "inferstack")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_images_are_pinned(objs: list[Obj]) -> None:
    for _, spec in pod_specs(objs):
        for c in containers(spec):
            image = c["image"]
            tagged = re.search(r":[\w][\w.-]*$", image.split("/")[-1]) is not None
            assert "@sha256:" in image or tagged, f"{image} has no tag or digest"
            assert not image.endswith(":latest"), image


def test_mounts_refer_to_volumes_and_writable_paths_exist(objs: list[Obj]) -> None:
    for workload, spec in pod_specs(objs):
        volumes = {v["name"] for v in spec.get("volumes", [])}
        volumes |= {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
        for c in containers(spec):
            mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
            assert set(mounts) <= volumes, f"{workload['metadata']['name']}/{c['name']}"
            assert "/tmp" in mounts.values(), f"{c['name']}: read-only root needs a writable /tmp"


def test_selectors_match_labels(objs: list[Obj]) -> None:
    pods = {w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w in workloads(objs)}
    for w in workloads(objs):
        assert matches(w["spec"]["selector"]["matchLabels"], pods[w["metadata"]["name"]])
        for tsc in w["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
            assert matches(tsc["labelSelector"]["matchLabels"], pods[w["metadata"]["name"]])
    for kind, path in (
        ("Service", ("spec", "selector")),
        ("PodDisruptionBudget", ("spec", "selector", "matchLabels")),
        ("NetworkPolicy", ("spec", "podSelector", "matchLabels")),
    ):
        for o in find(objs, kind):
            selector = o[path[0]]
            for key in path[1:]:
                selector = selector.get(key, {})
            if kind == "NetworkPolicy" and not selector:
                continue  # default deny: every pod
            assert any(matches(selector, labels) for labels in pods.values()), f"{kind}/{o['metadata']['name']}"


def test_service_ports_match_container_ports(objs: list[Obj]) -> None:
    for svc in find(objs, "Service"):
        backends = [
            c
            for w, spec in pod_specs(objs)
            if matches(svc["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
            for c in spec["containers"]
        ]
        names = {p["name"]: p["containerPort"] for c in backends for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in names, f"{svc['metadata']['name']}: no container port {port['targetPort']}"
    for w, spec in pod_specs(objs):
        for c in spec["containers"]:
            ports = {p["name"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                action = c.get(probe, {}).get("httpGet") or c.get(probe, {}).get("tcpSocket")
                if action:
                    assert action["port"] in ports, f"{w['metadata']['name']}: {probe}"


def test_gateway_follows_its_configuration_contract(objs: list[Obj]) -> None:
    config = _config(objs)
    gateway = one(objs, "Deployment", "inferstack-gateway")
    spec = gateway["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["command"] == ["inferstack"] and c["args"] == ["serve"]
    # Contract (issue 13): public listener `http` 8080, admin listener `admin` 8081.
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080, "admin": 8081}
    assert config["INFERSTACK_ADMIN_PORT"] == "8081"
    assert {p["targetPort"] for p in one(objs, "Service", "inferstack-gateway")["spec"]["ports"]} == {"http"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert config["INFERSTACK_DISCOVERY"] == "k8s"
    assert config["INFERSTACK_K8S_SERVICE"] == "vllm-engine"
    engine_svc = one(objs, "Service", "vllm-engine")
    assert engine_svc["spec"]["clusterIP"] == "None", "discovery reads a headless Service"
    assert config["INFERSTACK_K8S_PORT_NAME"] in {p["name"] for p in engine_svc["spec"]["ports"]}
    ns_env = [e for e in c["env"] if e["name"] == "INFERSTACK_K8S_NAMESPACE"]
    assert ns_env[0]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert spec["serviceAccountName"] == "inferstack-gateway"
    # The drain must fit in the grace period, or the kubelet kills streams mid-answer; and so must the
    # gateway's own exit deadline after it, so a stuck shutdown ends with its log line, not a SIGKILL.
    from inferstack.server import SHUTDOWN_MARGIN

    drain = int(config["INFERSTACK_DRAIN_GRACE"]) + int(config["INFERSTACK_DRAIN_DEADLINE"])
    assert spec["terminationGracePeriodSeconds"] > drain + SHUTDOWN_MARGIN
    # Scale from zero needs every model listed (held, not 404, while no engine runs).
    assert _served_models(objs) <= set(config["INFERSTACK_MODELS"].split(",")), "scale from zero needs the models"
    assert find(objs, "HorizontalPodAutoscaler", "inferstack-gateway")[0]["spec"]["minReplicas"] >= 2


def test_gateway_may_watch_endpointslices_and_nothing_more(objs: list[Obj]) -> None:
    role = one(objs, "Role", "inferstack-gateway-discovery")
    assert role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
    ]
    binding = one(objs, "RoleBinding", "inferstack-gateway-discovery")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "inferstack-gateway", "namespace": "inferstack"}]
    assert not find(objs, "ClusterRole") and not find(objs, "ClusterRoleBinding")


def test_keys_are_a_secret_reference_never_a_value(objs: list[Obj], overlay: str) -> None:
    assert not find(objs, "Secret"), "no Secret values are committed"
    spec = one(objs, "Deployment", "inferstack-gateway")["spec"]["template"]["spec"]
    keys = next(v for v in spec["volumes"] if v["name"] == "keys")["secret"]
    assert keys["secretName"] == "inferstack-keys"
    config = _config(objs)
    if config["INFERSTACK_AUTH_ENABLED"] == "true":
        assert not keys.get("optional"), "with auth on, a missing key file must stop the rollout"
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "keys")["mountPath"]
        assert config["INFERSTACK_KEYS_FILE"].startswith(mount + "/")
    else:
        assert overlay == "local-cpu", "auth may be off only on a local cluster"


def test_engine_probes_tolerate_a_long_load_and_a_busy_engine(objs: list[Obj]) -> None:
    assert engines(objs)
    for engine in engines(objs):
        _probes_tolerate_a_long_load(engine)


def _probes_tolerate_a_long_load(engine: Obj) -> None:
    spec = engine["spec"]["template"]["spec"]
    c = vllm(engine)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/health"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, "model loads take 10+ minutes"
    live = c["livenessProbe"]
    assert live["timeoutSeconds"] >= 5 and live["periodSeconds"] * live["failureThreshold"] >= 120
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert spec["terminationGracePeriodSeconds"] >= 120
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"mountPath": "/dev/shm", "name": "dshm"} in c["volumeMounts"]


KV_EVENTS = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": "tcp://*:5557", "topic": "kv"}


def _flags(args: list[str]) -> dict[str, str]:
    return dict(a.lstrip("-").split("=", 1) if "=" in a else (a.lstrip("-"), "") for a in args)


ENTRYPOINT = REPO / "docker" / "engine-gpu" / "entrypoint.sh"


def test_engine_publishes_kv_events_the_gateway_may_read(objs: list[Obj]) -> None:
    """Issue 14's contract: prefix caching with sha256_cbor, KV events on `kv-events` 5557, topic kv
    (in the container's arguments, or passed by the image's entrypoint)."""
    entrypoint = ENTRYPOINT.read_text()
    assert engines(objs)
    for engine in engines(objs):
        c = vllm(engine)
        flags = _flags(c["args"])
        for flag in ("enable-prefix-caching", "prefix-caching-hash-algo", "kv-events-config"):
            assert flag in flags or f"--{flag}" in entrypoint, flag
        if "prefix-caching-hash-algo" in flags:
            assert flags["prefix-caching-hash-algo"] == "sha256_cbor"
        if "kv-events-config" in flags:
            assert json.loads(flags["kv-events-config"]) == KV_EVENTS
        assert {"name": "kv-events", "containerPort": 5557, "protocol": "TCP"} in c["ports"]
    svc = one(objs, "Service", "vllm-engine")
    assert {"name": "kv-events", "port": 5557, "targetPort": "kv-events", "protocol": "TCP"} in svc["spec"]["ports"]


def test_engine_loads_weights_one_way_through_the_image_entrypoint(rendered: dict[str, list[Obj]]) -> None:
    """Defect 15: a `command:` bypassed docker/engine-gpu/entrypoint.sh, so its S3 streaming was never
    used. Now: no command, no copy step; MODEL_NAME and MODEL_S3_URI tell the entrypoint what to serve."""
    entrypoint = ENTRYPOINT.read_text()
    for name in GPU_OVERLAYS:
        assert engines(rendered[name]), name
        for engine in engines(rendered[name]):
            _loads_weights_through_the_entrypoint(engine, entrypoint)


def _loads_weights_through_the_entrypoint(engine: Obj, entrypoint: str) -> None:
    spec = engine["spec"]["template"]["spec"]
    vllm = spec["containers"][0]
    assert "command" not in vllm, "arguments go to the image's entrypoint, which loads the weights"
    # The only init container: a model with LoRA adapters gets the adapter-sync sidecar, which copies
    # adapters (lora.adapters_uri), never weights.
    init = [(c["name"], c.get("restartPolicy")) for c in spec.get("initContainers", [])]
    assert init in ([], [("adapter-sync", "Always")]), "one way to load weights: the entrypoint streams them from S3"
    assert vllm["image"].split("@")[0].rsplit(":", 1)[0].endswith("/inferstack/engine"), "our engine image"
    flags = _flags(vllm["args"])
    # The entrypoint sets these itself; a second value would contradict it.
    assert not {"model", "served-model-name", "host", "port", "load-format"} & set(flags)
    for flag in ("max-model-len", "gpu-memory-utilization", "tensor-parallel-size"):
        assert flag in flags, flag
    assert 0 < float(flags["gpu-memory-utilization"]) <= 0.95
    engine_env = _env(vllm)
    for var in ("MODEL_NAME", "MODEL_S3_URI", "PORT"):
        assert f"${{{var}" in entrypoint, f"the entrypoint no longer reads {var}"
    assert engine_env["PORT"] == str(next(p for p in vllm["ports"] if p["name"] == "http")["containerPort"])
    # <model folder>/<revision>/ in this cluster's bucket (the fleet names the folder and revision).
    assert re.fullmatch(r"s3://inferstack-dev-models-111122223333/models(/[\w.-]+)+/", engine_env["MODEL_S3_URI"])
    assert "PYTHONHASHSEED" not in engine_env, "vLLM would seed sha256_cbor block hashes with it"
    assert spec["serviceAccountName"] == "vllm-engine", "Terraform's Pod Identity binds this account"


def test_engines_land_only_on_gpu_nodes(rendered: dict[str, list[Obj]]) -> None:
    """Which GPU node types each model may use: k8s/tests/test_fleet_overlays.py."""
    for name in GPU_OVERLAYS:
        objs = rendered[name]
        (pool,) = find(objs, "NodePool")
        assert engines(objs), name
        for engine in engines(objs):
            spec = engine["spec"]["template"]["spec"]
            c = vllm(engine)
            assert c["resources"]["requests"][GPU] == c["resources"]["limits"][GPU]
            assert int(c["resources"]["limits"][GPU]) >= 1
            flags = _flags(c["args"])
            ranks = int(flags["tensor-parallel-size"]) * int(flags.get("pipeline-parallel-size", "1"))
            assert ranks == int(c["resources"]["limits"][GPU]), "one GPU per tensor/pipeline-parallel rank"
            assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
            terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
                "nodeSelectorTerms"
            ]
            # Every ORed term (one per label family: Karpenter's, Auto Mode's) requires the GPU pool.
            pool_req = {"key": "karpenter.sh/nodepool", "operator": "In", "values": [pool["metadata"]["name"]]}
            assert terms and all(pool_req in term["matchExpressions"] for term in terms)
        # The pool is tainted, so nothing without the toleration lands there.
        assert {"key": GPU, "effect": "NoSchedule"} in pool["spec"]["template"]["spec"]["taints"]
        for w, other in pod_specs(objs):
            if w["metadata"]["name"] not in engine_names(objs):
                assert not any(t.get("key") == GPU for t in other.get("tolerations", []))


def test_local_engine_needs_no_gpu(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["local-cpu"]
    assert not find(objs, "NodePool") and not find(objs, "ScaledObject")
    engine = one(objs, "Deployment", "vllm-engine")
    spec = engine["spec"]["template"]["spec"]
    assert "affinity" not in spec and "initContainers" not in spec
    assert GPU not in spec["containers"][0]["resources"]["limits"]
    assert engines(objs) == [engine] and _served_model(engine) == "tiny-llama"


def test_gpu_nodepool_scales_from_zero_within_limits(rendered: dict[str, list[Obj]]) -> None:
    families = {"g5", "g6", "g6e", "p4d", "p5", "p5e", "p5en"}
    for name in GPU_OVERLAYS:
        objs = rendered[name]
        (pool,) = find(objs, "NodePool")
        spec = pool["spec"]
        reqs = {r["key"]: r for r in spec["template"]["spec"]["requirements"]}
        (family,) = [r for k, r in reqs.items() if k.endswith("/instance-family")]
        assert family["operator"] == "In" and set(family["values"]) <= families
        assert set(reqs["karpenter.sh/capacity-type"]["values"]) == {"spot", "on-demand"}
        assert int(spec["limits"][GPU]) > 0
        assert spec["disruption"]["consolidationPolicy"] in ("WhenEmpty", "WhenEmptyOrUnderutilized")
        assert spec["disruption"]["consolidateAfter"] not in ("0s", "Never")
        assert spec["disruption"]["budgets"] and spec["template"]["spec"]["expireAfter"] != "Never"
        ref = spec["template"]["spec"]["nodeClassRef"]
        (nodeclass,) = find(objs, ref["kind"], ref["name"])
        assert nodeclass["apiVersion"].split("/")[0] == ref["group"]
        label_prefix = {"eks.amazonaws.com": "eks.amazonaws.com/", "karpenter.k8s.aws": "karpenter.k8s.aws/"}[
            ref["group"]
        ]
        assert family["key"].startswith(label_prefix), "Auto Mode and Karpenter use different label keys"
        # Discovery tags match Terraform's (karpenter.sh/discovery = cluster name).
        for terms in ("subnetSelectorTerms", "securityGroupSelectorTerms"):
            assert nodeclass["spec"][terms] == [{"tags": {"karpenter.sh/discovery": "inferstack-dev"}}]
        assert nodeclass["spec"]["role"].startswith("inferstack-dev-")


def test_keda_scales_each_model_on_queue_and_gateway_demand(rendered: dict[str, list[Obj]]) -> None:
    """One ScaledObject per engine (the fleet's, one per model). Which names the demand query adds up
    (a model's and its adapters'): fleet/tests/test_manifests.py evaluates it with promtool."""
    default = json.loads((REPO / "k8s" / "fleet" / "generated" / "catalog.json").read_text())["aliases"]["default"]
    for name in GPU_OVERLAYS:
        objs = rendered[name]
        by_target = {so["spec"]["scaleTargetRef"]["name"]: so for so in find(objs, "ScaledObject")}
        assert set(by_target) == engine_names(objs), "every engine scaled by exactly one ScaledObject"
        for engine in engines(objs):
            _scaled_on_queue_and_demand(name, engine, by_target[engine["metadata"]["name"]]["spec"], default)


def _scaled_on_queue_and_demand(overlay: str, engine: Obj, spec: Obj, default: str) -> None:
    model = _served_model(engine)
    # dev scales to zero; prod keeps one engine of the default model warm (a cold start costs
    # minutes: defect 11).
    warm = overlay == "aws-gpu-karpenter" and model == default
    assert spec["minReplicaCount"] == (1 if warm else 0) < spec["maxReplicaCount"], (overlay, model)
    queries = {t["metadata"]["query"] for t in spec["triggers"]}
    for q in queries:
        # One element, always: sum(...) of the series, 0 when there are none.
        assert re.fullmatch(r"sum\([^()]*\) or vector\(0\)", q), q
        assert 'namespace="inferstack"' in q
    assert any(f'vllm:num_requests_waiting{{namespace="inferstack",model_name="{model}"}}' in q for q in queries)
    demand = [q for q in queries if q.startswith('sum(inferstack_model_demand{namespace="inferstack",model')]
    assert len(demand) == 1, queries
    (selector,) = re.findall(r',model(=~?"[^"]*")\}', demand[0])
    # model="<model>", or model=~"<model>|<adapter versions>" with dots escaped (\\. in the string)
    assert model in selector.strip('=~"').replace("\\\\.", ".").split("|"), demand[0]
    assert not any("{model=" in q and "vllm:" in q for q in queries), "vLLM labels model_name, not model"
    for t in spec["triggers"]:
        assert t["type"] == "prometheus" and float(t["metadata"]["activationThreshold"]) == 0
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] < behavior["scaleDown"]["stabilizationWindowSeconds"]
    # The Deployment leaves the count to KEDA.
    assert "replicas" not in engine["spec"]


def test_monitors_scrape_named_ports_that_exist(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["aws-gpu"]
    sm = one(objs, "ServiceMonitor", "inferstack-gateway")
    svc = [s for s in find(objs, "Service") if matches(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
    # The admin listener, through a Service that exposes nothing else (the public one has no admin).
    assert [s["metadata"]["name"] for s in svc] == ["inferstack-gateway-admin"]
    assert [p["targetPort"] for p in svc[0]["spec"]["ports"]] == ["admin"]
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["admin"]
    # One PodMonitor scrapes every engine (each fleet model's), on a port each of them has.
    pm = one(objs, "PodMonitor", "vllm-engine")
    assert engines(objs)
    for engine in engines(objs):
        pod = engine["spec"]["template"]
        assert matches(pm["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"]), engine["metadata"]["name"]
        assert pm["spec"]["podMetricsEndpoints"][0]["port"] in {p["name"] for p in vllm(engine)["ports"]}


def _peers(rule: Obj) -> list[Obj]:
    return list(rule["from"])


def _ports(rule: Obj) -> set[str]:
    return {p["port"] for p in rule["ports"]}


MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
GATEWAY_PODS = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "inferstack-gateway"}}}


def test_network_policies_only_let_the_gateway_reach_engines(objs: list[Obj]) -> None:
    deny = one(objs, "NetworkPolicy", "default-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    policy = one(objs, "NetworkPolicy", "vllm-engine")
    engine = policy["spec"]["ingress"]
    # The gateway: requests and KV events. Prometheus: /metrics on `http`, never kv-events.
    assert [(_peers(r), _ports(r)) for r in engine] == [
        ([GATEWAY_PODS], {"http", "kv-events"}),
        ([MONITORING], {"http"}),
    ]
    # ...for every engine (each fleet model's): the one policy selects them all, and no other policy
    # selects an engine (policies add up: another one could only open more).
    assert engines(objs)
    for e in engines(objs):
        pod_labels = e["spec"]["template"]["metadata"]["labels"]
        selecting = [
            n
            for n in find(objs, "NetworkPolicy")
            if matches(n["spec"]["podSelector"].get("matchLabels", {}), pod_labels)
        ]
        assert [n["metadata"]["name"] for n in selecting] == ["default-deny-ingress", "vllm-engine"], e["metadata"][
            "name"
        ]


def test_gateway_discovers_every_engine(objs: list[Obj]) -> None:
    """The gateway finds engines through one headless Service (INFERSTACK_K8S_SERVICE): it must select
    every model's pods, on the port names the gateway and the KV-event subscriber use."""
    config = _config(objs)
    svc = one(objs, "Service", config["INFERSTACK_K8S_SERVICE"])
    ports = {p["name"] for p in svc["spec"]["ports"]}
    assert {config["INFERSTACK_K8S_PORT_NAME"], "kv-events"} <= ports
    assert engines(objs)
    for e in engines(objs):
        assert matches(svc["spec"]["selector"], e["spec"]["template"]["metadata"]["labels"]), e["metadata"]["name"]
        assert ports <= {p["name"] for p in vllm(e)["ports"]}


def test_network_policies_keep_the_admin_port_for_prometheus(objs: list[Obj]) -> None:
    gateway = one(objs, "NetworkPolicy", "inferstack-gateway")["spec"]["ingress"]
    admin = [r for r in gateway if "admin" in _ports(r)]
    assert [(_peers(r), _ports(r)) for r in admin] == [([MONITORING], {"admin"})], "admin: Prometheus only"
    public = [r for r in gateway if r not in admin]
    assert public and all(_ports(r) == {"http"} for r in public)
    assert all(MONITORING not in _peers(r) and GATEWAY_PODS not in _peers(r) for r in public)
    for r in public:
        assert all("namespaceSelector" in p or "ipBlock" in p for p in _peers(r)), "ingress namespaces or the VPC"


def test_gateway_settings_exist(objs: list[Obj]) -> None:
    """The gateway refuses an unknown INFERSTACK_*: every one we set is a documented setting."""
    documented = set(re.findall(r"`(INFERSTACK_[A-Z0-9_]+)`", (REPO / "docs" / "configuration.md").read_text()))
    unknown = set(_config(objs)) - documented
    assert not unknown, f"not in docs/configuration.md: {sorted(unknown)}"
