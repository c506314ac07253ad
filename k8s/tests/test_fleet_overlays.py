"""The aws overlays deploy the fleet (k8s/fleet/generated, from fleet/): checked on the overlays as
they are applied, per-cluster values (cluster/: instance types, bucket) included. fleet/tests checks
the generated component on its own; this checks what the overlays make of it."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from prometheus_client import CollectorRegistry

from inferstack.metrics.gateway import GatewayMetrics
from inferstack_fleet import catalog as fleet_catalog

from .manifests import GPU_OVERLAYS, REPO, Obj, engines, find, one, vllm
from .test_cluster import INSTANCE_TYPES, landing_types

GPU = "nvidia.com/gpu"
GENERATED = REPO / "k8s" / "fleet" / "generated"


@pytest.fixture(scope="module")
def catalog() -> fleet_catalog.Catalog:
    return fleet_catalog.load(REPO / "fleet")


def _by_model(objs: list[Obj]) -> dict[str, Obj]:
    return {e["spec"]["template"]["metadata"]["labels"]["inferstack.dev/model"]: e for e in engines(objs)}


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_the_overlay_deploys_one_engine_per_catalogued_model(
    rendered: dict[str, list[Obj]], overlay: str, catalog: fleet_catalog.Catalog
) -> None:
    """The fleet replaces the base's single engine (and its PDB); nothing else is called an engine."""
    objs = rendered[overlay]
    assert set(_by_model(objs)) == {m.name for m in catalog.models}
    assert len(engines(objs)) == len(catalog.models)
    assert not find(objs, "Deployment", "vllm-engine") and not find(objs, "PodDisruptionBudget", "vllm-engine")
    for name, engine in _by_model(objs).items():
        assert {e["name"]: e.get("value") for e in vllm(engine)["env"]}["MODEL_NAME"] == name


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_each_model_lands_only_on_instance_types_with_its_gpus(
    rendered: dict[str, list[Obj]], overlay: str, catalog: fleet_catalog.Catalog
) -> None:
    """Intent (issue 15): with the cluster's own NodePool (instance families, Terraform's instance
    types), each model's pods can be placed, and only on a type with its GPU name and exactly its
    GPU count: a 70B model never on an L4 node, a 7B model never holding a 4-GPU node."""
    objs = rendered[overlay]
    (pool,) = find(objs, "NodePool")
    engines_of = _by_model(objs)
    for m in catalog.models:
        engine = engines_of[m.name]
        lands = landing_types(engine, pool)
        assert lands, f"{overlay}: {m.name} ({m.hardware.count} x {m.hardware.gpu}) can land on no type of {pool}"
        for t in lands:
            _, _, gpu, count = INSTANCE_TYPES[t]
            assert (gpu, count) == (m.hardware.gpu, m.hardware.count), f"{overlay}: {m.name} could land on {t}"
        assert vllm(engine)["resources"]["limits"][GPU] == str(m.hardware.count)


def _terraform_types(env: str) -> list[str]:
    variables = (REPO / "terraform" / "envs" / env / "variables.tf").read_text()
    block = variables[variables.index('variable "gpu_instance_types"') :]
    (default,) = re.findall(r"default\s*=\s*(\[[^\]]*\])", block)[:1]
    types: list[str] = yaml.safe_load(default)
    return types


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_terraform_lets_every_environment_run_every_model(
    rendered: dict[str, list[Obj]], env: str, catalog: fleet_catalog.Catalog
) -> None:
    """The committed cluster/ values are dev's; prod's gpu_instance_types must serve the catalog too
    (the NodePool of either provisioner, limited to that environment's types)."""
    types = _terraform_types(env)
    assert set(types) <= set(INSTANCE_TYPES), "add the type to INSTANCE_TYPES (k8s/tests/test_cluster.py)"
    for overlay in GPU_OVERLAYS:
        objs = rendered[overlay]
        (pool,) = find(objs, "NodePool")
        pool = json.loads(json.dumps(pool))
        for req in pool["spec"]["template"]["spec"]["requirements"]:
            if req["key"] == "node.kubernetes.io/instance-type":
                req["values"] = types
        for name, engine in _by_model(objs).items():
            assert landing_types(engine, pool), f"{env} ({overlay}): no gpu_instance_types entry can run {name}"


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_nodepool_gpu_limit_covers_every_model_at_its_maximum(rendered: dict[str, list[Obj]], overlay: str) -> None:
    """Every model at its maxReplicaCount (as the overlay leaves it) plus one surge of the largest
    engine fit under the GPU NodePool's limit: KEDA never asks for pods Karpenter may not launch."""
    objs = rendered[overlay]
    (pool,) = find(objs, "NodePool")
    gpus = {e["metadata"]["name"]: int(vllm(e)["resources"]["limits"][GPU]) for e in engines(objs)}
    at_max = sum(
        so["spec"]["maxReplicaCount"] * gpus[so["spec"]["scaleTargetRef"]["name"]] for so in find(objs, "ScaledObject")
    )
    assert int(pool["spec"]["limits"][GPU]) >= at_max + max(gpus.values())
    for so in find(objs, "ScaledObject"):
        assert so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_a_more_important_model_outranks_a_less_important_one_when_gpus_are_short(
    rendered: dict[str, list[Obj]], overlay: str, catalog: fleet_catalog.Catalog
) -> None:
    """The catalog's ``priority`` reaches the scheduler: each engine's pods name a PriorityClass the
    overlay deploys, with the model's priority as its value (so the order of the classes is the
    catalog's), preempting lower ones; no class is the cluster's default."""
    objs = rendered[overlay]
    classes = {c["metadata"]["name"]: c for c in find(objs, "PriorityClass")}
    engines_of = _by_model(objs)
    for m in catalog.models:
        name = engines_of[m.name]["spec"]["template"]["spec"].get("priorityClassName")
        assert name in classes, f"{overlay}: {m.name}'s engine names no deployed PriorityClass ({name})"
        assert classes[name]["value"] == m.priority
        assert classes[name]["preemptionPolicy"] == "PreemptLowerPriority"
    assert not any(c.get("globalDefault") for c in classes.values())
    assert len({m.priority for m in catalog.models}) > 1, "the example catalog should rank its models"


def _gateway_metric_names() -> set[str]:
    names = set()
    for family in GatewayMetrics(CollectorRegistry()).registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def test_autoscaling_queries_name_metrics_that_exist(rendered: dict[str, list[Obj]]) -> None:
    """A KEDA query on a metric nobody exports reads `or vector(0)` forever: the model never wakes.
    Gateway metrics must be the gateway's (its registry); vLLM's are the v1 engine's (FIELD-NOTES)."""
    ours = _gateway_metric_names()
    vllm_metrics = {"vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"}
    for overlay in GPU_OVERLAYS:
        for so in find(rendered[overlay], "ScaledObject"):
            for trigger in so["spec"]["triggers"]:
                names = set(re.findall(r"([a-zA-Z_:][\w:]*)\{", trigger["metadata"]["query"]))
                assert names, trigger
                for name in names:
                    known = ours if name.startswith("inferstack_") else vllm_metrics
                    assert name in known, f"{so['metadata']['name']}: {name} is not exported"
                if any(n.startswith("inferstack_") for n in names):
                    assert "inferstack_model_demand" in names, "the signal that exists at zero replicas"


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_the_gateway_serves_the_generated_catalog(
    rendered: dict[str, list[Obj]], overlay: str, catalog: fleet_catalog.Catalog
) -> None:
    """INFERSTACK_CATALOG_FILE names catalog.json in the mounted catalog ConfigMap, whose content is the
    generated one (the committed cluster/ values are the example account's: no copy); every model is
    listed in INFERSTACK_MODELS, so a model at zero replicas is held, not 404."""
    objs = rendered[overlay]
    (config,) = [c for c in find(objs, "ConfigMap") if c["metadata"]["name"].startswith("inferstack-gateway")]
    env = config["data"]
    assert set(env["INFERSTACK_MODELS"].split(",")) == {m.name for m in catalog.models}
    pod = one(objs, "Deployment", "inferstack-gateway")["spec"]["template"]["spec"]
    (gateway,) = pod["containers"]
    mount = next(m for m in gateway["volumeMounts"] if env["INFERSTACK_CATALOG_FILE"].startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    (cm,) = find(objs, "ConfigMap", volume["configMap"]["name"])
    key = env["INFERSTACK_CATALOG_FILE"][len(mount["mountPath"]) + 1 :]
    assert cm["data"][key] == (GENERATED / "catalog.json").read_text()
    assert json.loads(cm["data"][key])["models"].keys() == {m.name for m in catalog.models}


def test_every_s3_uri_in_an_engine_is_one_the_cluster_values_rewrite(rendered: dict[str, list[Obj]]) -> None:
    """aws-cluster-values.sh rewrites the bucket of MODEL_S3_URI (container vllm) and of ADAPTERS_S3_URI
    (sidecar adapter-sync, on Deployments labelled inferstack.dev/adapter-sync=true). Any other S3 URI in
    an engine would keep the example account's bucket in another cluster (test_release renders one)."""
    rewritten = {("vllm", "MODEL_S3_URI"), ("adapter-sync", "ADAPTERS_S3_URI")}
    for overlay in GPU_OVERLAYS:
        for engine in engines(rendered[overlay]):
            spec = engine["spec"]["template"]["spec"]
            for c in [*spec.get("initContainers", []), *spec["containers"]]:
                for var in c.get("env", []):
                    if str(var.get("value", "")).startswith("s3://"):
                        assert (c["name"], var["name"]) in rewritten, (engine["metadata"]["name"], c["name"], var)
                assert not any("s3://" in a for a in c.get("args", []) + c.get("command", [])), c["name"]
                if c["name"] == "adapter-sync":
                    assert engine["metadata"]["labels"].get("inferstack.dev/adapter-sync") == "true"


def test_the_release_checks_talk_to_the_default_chat_model() -> None:
    """/v1/models lists every model and adapter: the release's smoke test and load-test gate must not
    take the first one (the embedding model, sorted first) or all of them (the 70B model wakes a
    4-GPU node). Both use the catalog's `default` alias, which must name a chat model."""
    served = json.loads((GENERATED / "catalog.json").read_text())
    default = served["aliases"]["default"]
    assert served["models"][default]["task"] == "generate"
    workflow = (REPO / ".github" / "workflows" / "deploy-env.yml").read_text()
    assert "jq -r .aliases.default k8s/fleet/generated/catalog.json" in workflow
    assert '--model "$model"' in workflow and "PROFILE: smoke-default" in workflow
    profile = yaml.safe_load((REPO / "loadtests" / "profiles" / "smoke-default.yaml").read_text())
    assert profile["models"] == {"default": 1}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_engine_role_may_read_every_prefix_the_fleet_names(env: str, catalog: fleet_catalog.Catalog) -> None:
    """Weights and adapters both come from the models bucket: an engine role limited to prefixes that
    miss one gets AccessDenied in the pod (prod once allowed only ``models/``, not ``adapters/``)."""
    main_tf = (REPO / "terraform" / "envs" / env / "main.tf").read_text()
    found = re.search(r"read_prefixes\s*=\s*\[([^\]]*)\]", main_tf)
    prefixes = re.findall(r'"([^"]*)"', found[1]) if found else [""]  # the module's default: all
    keys = [m.source.weights_uri for m in catalog.models]
    keys += [m.lora.adapters_uri for m in catalog.models if m.lora is not None]
    for uri in keys:
        key = uri.removeprefix("s3://").partition("/")[2]
        assert any(key.startswith(p) for p in prefixes), f"{env}: {uri} is outside read_prefixes {prefixes}"
