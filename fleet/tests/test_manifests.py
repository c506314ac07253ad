"""The generated fleet, rendered the way a cluster gets it (base + GPU nodes + monitoring + the
fleet component, once per node provisioner), validates strictly and places every model only where
its GPUs are. No cluster here: schemas, CRDs and the scheduler's matching rules stand in for one."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from inferstack_fleet import catalog as fleet_catalog
from inferstack_fleet import manifests
from inferstack_fleet.generate import files, render_base, stale
from inferstack_fleet.hardware import GPUS
from k8s.tests.manifests import render, requirement_holds
from k8s.tests.schemas import KUBERNETES_VERSION, crd_schemas

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "k8s" / "fleet" / "generated"
PROVISIONERS = {"karpenter": "gpu-nodes-karpenter", "auto-mode": "gpu-nodes-auto-mode"}
CUSTOM_GROUPS = ("karpenter.sh", "karpenter.k8s.aws", "keda.sh", "monitoring.coreos.com")
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def catalog() -> fleet_catalog.Catalog:
    return fleet_catalog.load(REPO / "fleet")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    """provisioner -> the objects of a cluster that uses the fleet (kustomize wants relative paths)."""
    out = {}
    for provisioner, component in PROVISIONERS.items():
        overlay = tmp_path_factory.mktemp(provisioner)
        rel = os.path.relpath(REPO / "k8s", overlay)
        (overlay / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources: [{rel}/base]\n"
            f"components: [{rel}/components/{component}, {rel}/components/monitoring, {rel}/fleet/generated]\n"
        )
        out[provisioner] = render(overlay)
    return out


@pytest.fixture(params=list(PROVISIONERS))
def objs(request: pytest.FixtureRequest, rendered: dict[str, list[Obj]]) -> list[Obj]:
    return rendered[request.param]


def engines(objs: list[Obj]) -> Iterator[Obj]:
    for o in objs:
        if o["kind"] == "Deployment" and o["metadata"]["labels"].get("app.kubernetes.io/component") == "engine":
            yield o


def test_generated_files_are_what_the_catalog_generates(catalog: fleet_catalog.Catalog) -> None:
    assert stale(GENERATED, files(catalog, render_base(REPO))) == [], "run `make fleet`"


def test_builtin_objects_match_the_kubernetes_schema(objs: list[Obj]) -> None:
    errors = []
    for o in objs:
        if o["apiVersion"].split("/")[0] in (*CUSTOM_GROUPS, "eks.amazonaws.com"):
            continue
        try:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {e.message} at {list(e.path)}")
    assert not errors, "\n".join(errors)


def test_custom_resources_match_their_crds(objs: list[Obj]) -> None:
    schemas, errors = crd_schemas(), []
    for o in objs:
        if o["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
            for err in jsonschema.Draft7Validator(schemas[(o["apiVersion"], o["kind"])]).iter_errors(o):
                errors.append(f"{o['kind']}/{o['metadata']['name']}: {err.message} at {list(err.path)}")
    assert not errors, "\n".join(errors)


def test_one_engine_per_model_and_the_base_engine_is_replaced(objs: list[Obj], catalog: fleet_catalog.Catalog) -> None:
    served = {}
    for d in engines(objs):
        vllm = next(c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm")
        env = {v["name"]: v.get("value") for v in vllm.get("env", [])}
        flags = dict(a.split("=", 1) for a in vllm["args"] if "=" in a)
        served[env.get("MODEL_NAME") or flags["--served-model-name"]] = (d, vllm, flags)
    assert set(served) == {m.name for m in catalog.models}
    for m in catalog.models:
        d, vllm, flags = served[m.name]
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        assert flags["--tensor-parallel-size"] == str(m.hardware.tp)
        assert flags["--max-model-len"] == str(m.engine.max_model_len)
        assert vllm["resources"]["requests"]["nvidia.com/gpu"] == vllm["resources"]["limits"]["nvidia.com/gpu"]
        assert vllm["resources"]["limits"]["nvidia.com/gpu"] == str(m.hardware.count)
        assert ("--enable-lora" in vllm["args"]) == (m.lora is not None)


def test_engines_with_lora_get_their_adapters_on_disk_before_vllm_starts(
    objs: list[Obj], catalog: fleet_catalog.Catalog
) -> None:
    """The gateway loads adapters at run time from INFERSTACK_ADAPTERS__ROOT (/adapters) + the path below
    the model's lora.adapters_uri: a sidecar mirrors that prefix to a volume vLLM reads."""
    models = {m.name: m for m in catalog.models}
    for d in engines(objs):
        model = models[d["metadata"]["labels"]["inferstack.dev/model"]]
        pod = d["spec"]["template"]["spec"]
        vllm = next(c for c in pod["containers"] if c["name"] == "vllm")
        sync = [c for c in pod.get("initContainers", []) if c["name"] == "adapter-sync"]
        env = {v["name"]: v.get("value") for v in vllm.get("env", [])}
        if model.lora is None:
            assert not sync and "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in env
            continue
        assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
        (sidecar,) = sync
        assert sidecar["restartPolicy"] == "Always" and "startupProbe" in sidecar  # vLLM waits for the first sync
        sync_env = {v["name"]: v["value"] for v in sidecar["env"]}
        assert sync_env["ADAPTERS_S3_URI"] == model.lora.adapters_uri
        mounts = {m["mountPath"]: m for m in vllm["volumeMounts"]}
        shared = mounts[sync_env["ADAPTERS_DIR"]]
        assert shared["readOnly"] is True
        assert shared["name"] in {m["name"] for m in sidecar["volumeMounts"]}
        assert any(v["name"] == shared["name"] and "emptyDir" in v for v in pod["volumes"])
        flags = [a for a in vllm["args"] if a.startswith("--max-cpu-loras")]
        assert flags == ([f"--max-cpu-loras={model.lora.max_cpu_loras}"] if model.lora.max_cpu_loras else [])


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_each_engine_pod_has_exactly_one_pdb_and_one_autoscaler(objs: list[Obj]) -> None:
    """Two PDBs on one pod make the eviction API refuse it (node drains hang); a ScaledObject must
    target a Deployment that exists."""
    pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in objs if o["kind"] == "ScaledObject"}
    deployments = {d["metadata"]["name"] for d in engines(objs)}
    assert set(scaled) == deployments
    for d in engines(objs):
        pod_labels = d["spec"]["template"]["metadata"]["labels"]
        assert len([p for p in pdbs if _selects(p["spec"]["selector"]["matchLabels"], pod_labels)]) == 1
        model = pod_labels["inferstack.dev/model"]
        queries = [t["metadata"]["query"] for t in scaled[d["metadata"]["name"]]["spec"]["triggers"]]
        # vLLM labels model_name, the gateway model (docs/metrics.md); sum(...) gives one element.
        queue = f'sum(vllm:num_requests_waiting{{namespace="inferstack",model_name="{model}"}}) or vector(0)'
        assert queries[0] == queue
        # What the demand query matches: test_demand_counts_the_model_and_its_adapters.
        assert queries[1].startswith('sum(inferstack_model_demand{namespace="inferstack",model')
        assert all(t["useCachedMetrics"] for t in scaled[d["metadata"]["name"]]["spec"]["triggers"])


def gpu_nodes(nodepool: Obj) -> list[dict[str, str]]:
    """The labels of every GPU node type the NodePool can launch (from hardware.GPUS), with the
    label family (karpenter.k8s.aws or eks.amazonaws.com) its requirements use."""
    reqs = nodepool["spec"]["template"]["spec"]["requirements"]
    prefix = next(r["key"].split("/")[0] for r in reqs if r["key"].endswith("/instance-family"))
    nodes = []
    for gpu_name, gpu in GPUS.items():
        for family in gpu.families:
            for count in gpu.counts:
                labels = {
                    "karpenter.sh/nodepool": nodepool["metadata"]["name"],
                    f"{prefix}/instance-family": family,
                    f"{prefix}/instance-gpu-name": gpu_name,
                    f"{prefix}/instance-gpu-count": str(count),
                    f"{prefix}/instance-gpu-manufacturer": "nvidia",
                    "karpenter.sh/capacity-type": "on-demand",
                    "kubernetes.io/arch": "amd64",
                }
                if all(requirement_holds(r, labels) for r in reqs):
                    nodes.append({**nodepool["spec"]["template"]["metadata"].get("labels", {}), **labels})
    return nodes


def test_each_model_lands_only_on_nodes_with_its_gpus(objs: list[Obj]) -> None:
    (nodepool,) = [o for o in objs if o["kind"] == "NodePool" and o["metadata"]["name"] == "gpu"]
    nodes = gpu_nodes(nodepool)
    taints = nodepool["spec"]["template"]["spec"].get("taints", [])
    for d in engines(objs):
        pod = d["spec"]["template"]["spec"]
        vllm = next(c for c in pod["containers"] if c["name"] == "vllm")
        want = int(vllm["resources"]["requests"]["nvidia.com/gpu"])
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        fits = [n for n in nodes if any(all(requirement_holds(r, n) for r in t["matchExpressions"]) for t in terms)]
        name = d["metadata"]["name"]
        assert fits, f"{name}: no node type of NodePool gpu satisfies its node affinity"
        for n in fits:
            gpu_name = next(v for k, v in n.items() if k.endswith("/instance-gpu-name"))
            count = int(next(v for k, v in n.items() if k.endswith("/instance-gpu-count")))
            assert count >= want, f"{name} could land on {count} x {gpu_name}, needs {want}"
        assert len({next(v for k, v in n.items() if k.endswith("/instance-gpu-name")) for n in fits}) == 1
        for taint in taints:
            assert any(
                t.get("key") == taint["key"] and t.get("effect") == taint["effect"] for t in pod["tolerations"]
            ), f"{name} does not tolerate {taint}"


def test_nodepool_gpu_limit_covers_every_model_at_its_maximum(objs: list[Obj]) -> None:
    (nodepool,) = [o for o in objs if o["kind"] == "NodePool" and o["metadata"]["name"] == "gpu"]
    gpus = {
        d["metadata"]["name"]: int(
            next(c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm")["resources"]["limits"][
                "nvidia.com/gpu"
            ]
        )
        for d in engines(objs)
    }
    at_max = sum(
        o["spec"]["maxReplicaCount"] * gpus[o["spec"]["scaleTargetRef"]["name"]]
        for o in objs
        if o["kind"] == "ScaledObject"
    )
    # And one rolling update's surge (maxSurge 1) of the largest engine on top.
    assert int(nodepool["spec"]["limits"]["nvidia.com/gpu"]) >= at_max + max(gpus.values())


def test_the_gateway_reads_the_catalog_it_is_given(objs: list[Obj]) -> None:
    """INFERSTACK_CATALOG_FILE and INFERSTACK_PRICES_FILE name files of the mounted catalog ConfigMap."""
    (gateway,) = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "inferstack-gateway"]
    pod = gateway["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "gateway"]
    config_maps = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_maps[source["configMapRef"]["name"]]["data"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounted = {}
    for mount in container["volumeMounts"]:
        config_map = volumes[mount["name"]].get("configMap")
        if config_map:
            for key in config_maps[config_map["name"]]["data"]:
                mounted[f"{mount['mountPath']}/{key}"] = config_maps[config_map["name"]]["data"][key]
    assert (GENERATED / "catalog.json").read_text() == mounted[env["INFERSTACK_CATALOG_FILE"]]
    assert (GENERATED / "prices.yaml").read_text() == mounted[env["INFERSTACK_PRICES_FILE"]]
    # The gateway's loads point vLLM where the engines' adapter-sync sidecars mirror the adapters.
    sync_dirs = {
        v["value"]
        for d in engines(objs)
        for c in d["spec"]["template"]["spec"].get("initContainers", [])
        if c["name"] == "adapter-sync"
        for v in c["env"]
        if v["name"] == "ADAPTERS_DIR"
    }
    assert sync_dirs == {env["INFERSTACK_ADAPTERS__ROOT"]}


def test_demand_counts_the_model_and_its_adapters(
    rendered: dict[str, list[Obj]], catalog: fleet_catalog.Catalog, tmp_path: Path
) -> None:
    """promtool evaluates each ScaledObject's demand query on series for every name the gateway may
    route by: a model's query adds its own and its adapter versions' demand, and nothing else (the
    dot in qwen2.5 is a literal dot, not any character)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run scripts/install-observability.sh"
    names = {m.name: [m.name] for m in catalog.models}
    for e in catalog.adapters:
        versions = [e.adapter.version] + ([e.adapter.rollout.version] if e.adapter.rollout else [])
        names[e.base] += [fleet_catalog.served_name(e.adapter.name, v) for v in versions]
    every = [n for group in names.values() for n in group] + ["qwen2x5-7b-instruct", "sql-bot@v3x"]
    # Demand 2^i for the i-th name: each sum says exactly which names it counted.
    series = [
        {"series": f'inferstack_model_demand{{namespace="inferstack",model="{n}"}}', "values": f"{2**i}x2"}
        for i, n in enumerate(every)
    ]
    queries = {
        o["metadata"]["labels"]["inferstack.dev/model"]: o["spec"]["triggers"][1]["metadata"]["query"]
        for o in rendered["karpenter"]
        if o["kind"] == "ScaledObject"
    }
    rules = {"groups": [{"name": "demand", "rules": []}]}
    tests: dict[str, Any] = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": []}
    expected = []
    for i, (model, query) in enumerate(sorted(queries.items())):
        rules["groups"][0]["rules"].append({"record": f"demand_{i}", "expr": query})
        total = sum(2 ** every.index(n) for n in names[model])
        samples = [{"labels": f"demand_{i}", "value": total}]
        expected.append({"expr": f"demand_{i}", "eval_time": "1m", "exp_samples": samples})
    tests["tests"].append({"interval": "1m", "input_series": series, "promql_expr_test": expected})
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    proc = subprocess.run(
        [promtool, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_checkov_finds_nothing_the_overlays_do_not_explain(rendered: dict[str, list[Obj]], tmp_path: Path) -> None:
    """The fleet's engines pass the same policy as the single engine of k8s/overlays (k8s/checkov.yaml)."""
    checkov = REPO / ".venv-checkov" / "bin" / "checkov"
    assert checkov.is_file(), "run scripts/install-checkov.sh"
    for name, objs in rendered.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(objs))
    skips = set(yaml.safe_load((REPO / "k8s" / "checkov.yaml").read_text())["skip-check"])
    cmd = [str(checkov), "-d", str(tmp_path), "--framework", "kubernetes", "--quiet", "--compact", "-o", "json"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    )
    report = json.loads(proc.stdout)
    assert report["summary"]["parsing_errors"] == 0
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    unexplained = sorted(f for f in failed if f[0] not in skips)
    assert not unexplained, f"checkov findings not in k8s/checkov.yaml: {unexplained}"


def test_the_gateway_copies_every_file_its_tokenizer_reads_or_refuses() -> None:
    """Every file name kvcache/local_tokenizer.py opens or checks for is copied by the gateway's
    tokenizer-sync: one left in S3 would make the gateway render another chat template than vLLM (a
    missing chat_template.jinja) or miss a reason to refuse the model (a processor's template)."""
    source = (REPO / "service" / "inferstack" / "kvcache" / "local_tokenizer.py").read_text()
    named = set(re.findall(r'"([a-z_]+\.(?:json|jinja))"', source))
    assert named >= {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}, named
    assert named <= set(manifests.TOKENIZER_FILES), sorted(named - set(manifests.TOKENIZER_FILES))


def test_the_tokenizer_copy_names_keys_and_refuses_a_second_bucket(catalog: fleet_catalog.Catalog) -> None:
    """The bucket is one env var the cluster values replace; a generating model in another bucket would
    escape that rewrite (as an engine's would), so the generator says so instead of writing it."""
    generating = [m for m in catalog.models if m.task == "generate"]
    env = {v["name"]: v["value"] for v in manifests.tokenizer_sync(list(catalog.models))["env"]}
    assert "s3://" not in env["TOKENIZER_SOURCES"]
    assert {line.split()[0] for line in env["TOKENIZER_SOURCES"].splitlines()} == {m.name for m in generating}
    moved = generating[0].model_copy(
        update={"source": fleet_catalog.Source(uri="s3://another-bucket/models/x", revision="r1")}
    )
    with pytest.raises(manifests.TemplateError, match="several buckets"):
        manifests.tokenizer_sync([moved, *generating[1:]])
