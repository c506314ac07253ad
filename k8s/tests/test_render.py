"""Every overlay renders, and the generated inputs to the overlays are up to date."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from .manifests import GPU_OVERLAYS, K8S, OVERLAY_OF_MODE, OVERLAYS, PLATFORMS, REPO, Obj, engines, find, render, vllm
from .shims import Shims


def test_every_overlay_renders(rendered: dict[str, list[Obj]]) -> None:
    assert set(rendered) == set(OVERLAYS)
    assert {p.name for p in (K8S / "overlays").iterdir() if p.is_dir()} == set(OVERLAYS), "untested overlay"
    for name, objs in rendered.items():
        kinds = {o["kind"] for o in objs}
        assert {"Namespace", "Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget"} <= kinds, name


def test_gpu_overlays_add_nodes_autoscaling_and_monitoring(rendered: dict[str, list[Obj]]) -> None:
    for name in GPU_OVERLAYS:
        kinds = {o["kind"] for o in rendered[name]}
        assert {"NodePool", "ScaledObject", "ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds, name
    assert find(rendered["aws-gpu"], "NodeClass") and not find(rendered["aws-gpu"], "EC2NodeClass")
    assert find(rendered["aws-gpu-karpenter"], "EC2NodeClass") and not find(rendered["aws-gpu-karpenter"], "NodeClass")


def test_every_component_renders_in_some_overlay() -> None:
    used = set()
    for name in OVERLAYS:
        text = (K8S / "overlays" / name / "kustomization.yaml").read_text()
        used |= {p.name for p in (K8S / "components").iterdir() if f"components/{p.name}" in text}
    assert used == {p.name for p in (K8S / "components").iterdir() if p.is_dir()}


def test_base_renders_alone() -> None:
    assert find(render(K8S / "base"), "Deployment", "inferstack-gateway")


def test_monitoring_copy_is_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(K8S / "scripts" / "sync-monitoring.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_monitoring_copy_has_every_rule_file_and_dashboard(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["aws-gpu"]
    rule_files = sorted((REPO / "observability" / "rules").glob("*.rules.yaml"))
    dashboards = sorted((REPO / "observability" / "dashboards").glob("*.json"))
    assert rule_files and dashboards
    assert len(find(objs, "PrometheusRule")) == len(rule_files)
    maps = [o for o in find(objs, "ConfigMap") if o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    assert sorted(k for m in maps for k in m["data"]) == [p.name for p in dashboards]
    assert {m["metadata"]["namespace"] for m in maps} == {"monitoring"}  # where Grafana's sidecar looks


def _cluster_values(shims: Shims, mode: str, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(K8S / "scripts" / "aws-cluster-values.sh")],
        env=shims.env(mode, OUT_DIR=str(out / "overlay"), PLATFORM_OUT_DIR=str(out / "platform"), **env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_cluster_values_script_writes_what_the_overlays_hold(tmp_path: Path) -> None:
    """The committed cluster/ components are exactly the script's output for terraform/envs/dev (example account)."""
    shims = Shims(tmp_path / "shims")
    for mode, overlay in OVERLAY_OF_MODE.items():
        proc = _cluster_values(shims, mode, tmp_path / mode)
        assert proc.returncode == 0, proc.stderr
        committed = (K8S / "overlays" / overlay / "cluster" / "kustomization.yaml").read_text()
        assert (tmp_path / mode / "overlay" / "kustomization.yaml").read_text() == committed, f"re-run for {overlay}"
    platform = (K8S / "platform" / PLATFORMS["karpenter"] / "cluster" / "kustomization.yaml").read_text()
    assert (tmp_path / "karpenter" / "platform" / "kustomization.yaml").read_text() == platform
    assert not (tmp_path / "auto" / "platform").exists(), "Auto Mode has no per-cluster platform values"


def test_cluster_values_script_pins_digests_when_given(tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    proc = _cluster_values(Shims(tmp_path / "shims"), "auto", tmp_path, GATEWAY_DIGEST=digest)
    assert proc.returncode == 0, proc.stderr
    assert f"digest: {digest}" in (tmp_path / "overlay" / "kustomization.yaml").read_text()


def test_cluster_values_script_uses_elasticache_when_terraform_made_one(tmp_path: Path) -> None:
    shims = Shims(tmp_path / "shims")
    shims.outputs["redis_url"] = "rediss://master.inferstack-dev.abc123.use1.cache.amazonaws.com:6379"
    proc = _cluster_values(shims, "auto", tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "overlay" / "kustomization.yaml").read_text()
    assert "INFERSTACK_REDIS_URL=rediss://master.inferstack-dev.abc123.use1.cache.amazonaws.com:6379" in text


def test_cluster_values_script_gives_another_bucket_its_own_catalog(tmp_path: Path) -> None:
    """Another account's bucket: the catalog's adapter sources follow it (a copy merged over the fleet's
    ConfigMap), and redis plus catalog share one configMapGenerator list. The example account: no copy."""
    shims = Shims(tmp_path / "shims")
    shims.outputs["models_bucket_name"] = "inferstack-prod-models-444455556666"
    shims.outputs["redis_url"] = "rediss://master.example:6379"
    proc = _cluster_values(shims, "auto", tmp_path)
    assert proc.returncode == 0, proc.stderr
    generated = (K8S / "fleet" / "generated" / "catalog.json").read_text()
    copy = (tmp_path / "overlay" / "catalog.json").read_text()
    assert copy == generated.replace("inferstack-dev-models-111122223333", "inferstack-prod-models-444455556666")
    values = yaml.safe_load((tmp_path / "overlay" / "kustomization.yaml").read_text())
    assert [g["name"] for g in values["configMapGenerator"]] == ["inferstack-gateway", "inferstack-catalog"]
    assert values["configMapGenerator"][1] == {
        "name": "inferstack-catalog",
        "namespace": "inferstack",
        "behavior": "merge",
        "files": ["catalog.json"],
    }
    proc = _cluster_values(Shims(tmp_path / "shims-dev"), "auto", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "overlay" / "catalog.json").exists(), "a stale copy would shadow the fleet's catalog"


def test_cluster_values_script_refuses_an_unknown_scheme(tmp_path: Path) -> None:
    proc = _cluster_values(Shims(tmp_path / "shims"), "auto", tmp_path, INGRESS_SCHEME="public")
    assert proc.returncode == 64


def test_platforms_render(platforms: dict[str, list[Obj]]) -> None:
    assert {p.name for p in (K8S / "platform").iterdir() if p.is_dir()} == set(PLATFORMS.values()), "untested"
    for mode, objs in platforms.items():
        assert find(objs, "StorageClass"), mode


def test_every_terraform_output_the_scripts_read_exists() -> None:
    """The names in versions.md: a renamed output breaks the scripts. `out NAME` must exist; `optional NAME`
    may be null or absent (vpc_id / vpc_cidr then come from the cluster itself)."""
    required: set[str] = set()
    for script in ("bootstrap.sh", "scripts/aws-cluster-values.sh"):
        text = (K8S / script).read_text()
        required |= set(re.findall(r"\bout ([a-z_]+)\b", text)) | set(re.findall(r"output -json ([a-z_]+)\)", text))
    assert {"cluster_name", "compute_mode", "karpenter_version", "gpu_instance_types"} <= required
    for env in ("dev", "prod"):
        declared = set(
            re.findall(r'^output "(\w+)"', (REPO / "terraform" / "envs" / env / "outputs.tf").read_text(), re.M)
        )
        assert required <= declared, f"terraform/envs/{env}/outputs.tf lacks {sorted(required - declared)}"
        # One Karpenter everywhere: the chart Terraform's output names, the CRDs the tests validate with.
        (pinned,) = re.findall(
            r'karpenter_version\s*=\s*"([\d.]+)"', (REPO / "terraform" / "envs" / env / "main.tf").read_text()
        )
        (fetched,) = re.findall(r"^KARPENTER=v([\d.]+)", (K8S / "scripts" / "fetch-crds.sh").read_text(), re.M)
        assert pinned == fetched, f"{env}: Terraform installs Karpenter {pinned}, the CRDs are v{fetched}"


def test_engine_requests_are_what_terraform_sized_the_gpu_types_for(rendered: dict[str, list[Obj]]) -> None:
    """Defect 12, both halves: Terraform checks gpu_instance_types against engine_resources; the engine asks for
    exactly that per GPU. (Which types each engine fits: test_cluster, test_fleet_overlays.)"""
    # One figure for every environment: terraform/modules/platform (which envs/dev and envs/prod call).
    text = (REPO / "terraform" / "modules" / "platform" / "sizing.tf").read_text()
    (cpu, memory, gpus) = re.findall(
        r'engine_resources = \{ cpu = "([\d.]+)", memory = "(\w+)", gpus = (\d+) \}', text
    )[0]
    for name in GPU_OVERLAYS:
        assert engines(rendered[name]), name
        for engine in engines(rendered[name]):
            # A fleet engine with n times the GPUs asks for n times the CPU and memory (inferstack_fleet).
            requests = vllm(engine)["resources"]["requests"]
            n = int(requests["nvidia.com/gpu"]) // int(gpus)
            scaled = {
                "cpu": str(int(cpu) * n),
                "memory": f"{int(memory[:-2]) * n}Gi",
                "nvidia.com/gpu": str(n * int(gpus)),
            }
            assert requests == scaled, (name, engine["metadata"]["name"])
