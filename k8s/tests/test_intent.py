"""What the manifests are for, checked on the rendered overlays: the mistakes schemas cannot see."""

from __future__ import annotations

import re

from .manifests import GPU_OVERLAYS, Obj, containers, find, matches, one, pod_specs

GPU = "nvidia.com/gpu"


def _env(container: Obj) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def _config(objs: list[Obj]) -> dict[str, str]:
    (cm,) = [c for c in find(objs, "ConfigMap") if c["metadata"]["name"].startswith("inferstack-gateway")]
    return dict(cm["data"])


def _served_model(objs: list[Obj]) -> str:
    args = one(objs, "Deployment", "vllm-engine")["spec"]["template"]["spec"]["containers"][0]["args"]
    (name,) = [a.split("=", 1)[1] for a in args if a.startswith("--served-model-name=")]
    return name


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
        for c in containers(spec):
            mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
            assert set(mounts) <= volumes, f"{workload['metadata']['name']}/{c['name']}"
            assert "/tmp" in mounts.values(), f"{c['name']}: read-only root needs a writable /tmp"


def test_selectors_match_labels(objs: list[Obj]) -> None:
    pods = {w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w in find(objs, "Deployment")}
    for w in find(objs, "Deployment"):
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
                if probe in c:
                    assert c[probe]["httpGet"]["port"] in ports, f"{w['metadata']['name']}: {probe}"


def test_gateway_follows_its_configuration_contract(objs: list[Obj]) -> None:
    config = _config(objs)
    gateway = one(objs, "Deployment", "inferstack-gateway")
    spec = gateway["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["command"] == ["inferstack"] and c["args"] == ["serve"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert config["INFERSTACK_DISCOVERY"] == "k8s"
    assert config["INFERSTACK_K8S_SERVICE"] == "vllm-engine"
    engine_svc = one(objs, "Service", "vllm-engine")
    assert engine_svc["spec"]["clusterIP"] == "None", "discovery reads a headless Service"
    assert config["INFERSTACK_K8S_PORT_NAME"] in {p["name"] for p in engine_svc["spec"]["ports"]}
    ns_env = [e for e in c["env"] if e["name"] == "INFERSTACK_K8S_NAMESPACE"]
    assert ns_env[0]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert spec["serviceAccountName"] == "inferstack-gateway"
    # The drain must fit in the grace period, or the kubelet kills streams mid-answer.
    drain = int(config["INFERSTACK_DRAIN_GRACE"]) + int(config["INFERSTACK_DRAIN_DEADLINE"])
    assert spec["terminationGracePeriodSeconds"] > drain
    assert _served_model(objs) in config["INFERSTACK_MODELS"].split(","), "scale from zero needs the model listed"
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
    spec = one(objs, "Deployment", "vllm-engine")["spec"]["template"]["spec"]
    c = spec["containers"][0]
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


def test_engine_args_and_model_cache(rendered: dict[str, list[Obj]]) -> None:
    for name in GPU_OVERLAYS:
        spec = one(rendered[name], "Deployment", "vllm-engine")["spec"]["template"]["spec"]
        args = dict(
            a.lstrip("-").split("=", 1) if "=" in a else (a.lstrip("-"), "") for a in spec["containers"][0]["args"]
        )
        for flag in (
            "model",
            "served-model-name",
            "max-model-len",
            "gpu-memory-utilization",
            "tensor-parallel-size",
            "enable-prefix-caching",
        ):
            assert flag in args, flag
        assert 0 < float(args["gpu-memory-utilization"]) <= 0.95
        # The init step fills the same path the engine loads, on a volume that outlives restarts.
        (fetch,) = spec["initContainers"]
        assert args["model"] == f"/model-cache/{_env(fetch)['MODEL_DIR']}"
        cache = next(v for v in spec["volumes"] if v["name"] == "model-cache")
        assert "emptyDir" in cache or "persistentVolumeClaim" in cache
        assert not _env(fetch)["MODELS_BUCKET"].endswith("ACCOUNT_ID"), "cluster/ sets the bucket"
        assert spec["serviceAccountName"] == "vllm-engine", "Terraform's Pod Identity binds this account"


def test_engines_land_only_on_gpu_nodes(rendered: dict[str, list[Obj]]) -> None:
    for name in GPU_OVERLAYS:
        objs = rendered[name]
        spec = one(objs, "Deployment", "vllm-engine")["spec"]["template"]["spec"]
        c = spec["containers"][0]
        assert c["resources"]["requests"][GPU] == c["resources"]["limits"][GPU]
        assert int(c["resources"]["limits"][GPU]) >= 1
        tp = next(a for a in c["args"] if a.startswith("--tensor-parallel-size=")).split("=")[1]
        assert int(tp) == int(c["resources"]["limits"][GPU]), "one GPU per tensor-parallel rank"
        assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        (term,) = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ]
        (pool,) = find(objs, "NodePool")
        assert {"key": "karpenter.sh/nodepool", "operator": "In", "values": [pool["metadata"]["name"]]} in term[
            "matchExpressions"
        ]
        # The pool is tainted, so nothing without the toleration lands there.
        assert {"key": GPU, "effect": "NoSchedule"} in pool["spec"]["template"]["spec"]["taints"]
        for w, other in pod_specs(objs):
            if w["metadata"]["name"] != "vllm-engine":
                assert not any(t.get("key") == GPU for t in other.get("tolerations", []))


def test_local_engine_needs_no_gpu(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["local-cpu"]
    assert not find(objs, "NodePool") and not find(objs, "ScaledObject")
    spec = one(objs, "Deployment", "vllm-engine")["spec"]["template"]["spec"]
    assert "affinity" not in spec and "initContainers" not in spec
    assert GPU not in spec["containers"][0]["resources"]["limits"]
    assert _served_model(objs) == "tiny-llama"


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
    for name in GPU_OVERLAYS:
        objs = rendered[name]
        model = _served_model(objs)
        (so,) = find(objs, "ScaledObject")
        spec = so["spec"]
        assert spec["scaleTargetRef"]["name"] == "vllm-engine" and find(objs, "Deployment", "vllm-engine")
        assert spec["minReplicaCount"] == 0 < spec["maxReplicaCount"]
        queries = {t["metadata"]["query"] for t in spec["triggers"]}
        for q in queries:
            # One element, always: sum(...) of the series, 0 when there are none.
            assert re.fullmatch(r"sum\([^()]*\) or vector\(0\)", q), q
            assert 'namespace="inferstack"' in q
        assert any(f'vllm:num_requests_waiting{{namespace="inferstack",model_name="{model}"}}' in q for q in queries)
        assert any(f'inferstack_model_demand{{namespace="inferstack",model="{model}"}}' in q for q in queries)
        assert not any("{model=" in q and "vllm:" in q for q in queries), "vLLM labels model_name, not model"
        for t in spec["triggers"]:
            assert t["type"] == "prometheus" and float(t["metadata"]["activationThreshold"]) == 0
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] < behavior["scaleDown"]["stabilizationWindowSeconds"]
        # The Deployment leaves the count to KEDA.
        assert "replicas" not in one(objs, "Deployment", "vllm-engine")["spec"]


def test_monitors_scrape_named_ports_that_exist(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["aws-gpu"]
    sm = one(objs, "ServiceMonitor", "inferstack-gateway")
    svc = [s for s in find(objs, "Service") if matches(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
    assert [s["metadata"]["name"] for s in svc] == ["inferstack-gateway"]
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc[0]["spec"]["ports"]}
    pm = one(objs, "PodMonitor", "vllm-engine")
    engine = one(objs, "Deployment", "vllm-engine")["spec"]["template"]
    assert matches(pm["spec"]["selector"]["matchLabels"], engine["metadata"]["labels"])
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] in {p["name"] for p in engine["spec"]["containers"][0]["ports"]}


def test_network_policies_only_let_the_gateway_reach_engines(objs: list[Obj]) -> None:
    policies = find(objs, "NetworkPolicy")
    deny = one(objs, "NetworkPolicy", "default-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    engine = one(objs, "NetworkPolicy", "vllm-engine")
    (rule,) = engine["spec"]["ingress"]
    pod_peers = [p for p in rule["from"] if "podSelector" in p]
    assert pod_peers == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "inferstack-gateway"}}}]
    ns_peers = [p["namespaceSelector"]["matchLabels"] for p in rule["from"] if "namespaceSelector" in p]
    assert ns_peers == [{"kubernetes.io/metadata.name": "monitoring"}]
    gateway = one(objs, "NetworkPolicy", "inferstack-gateway")
    (rule,) = gateway["spec"]["ingress"]
    assert all("namespaceSelector" in p and "podSelector" not in p for p in rule["from"]), "ingress and monitoring only"
    assert len(policies) == 3
