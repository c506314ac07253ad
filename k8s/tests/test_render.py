"""Every overlay renders, and the generated inputs to the overlays are up to date."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .manifests import GPU_OVERLAYS, K8S, OVERLAYS, REPO, Obj, find, render


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


def _fake_terraform(tmp_path: Path, mode: str) -> dict[str, str]:
    """A `terraform` on PATH that answers `output -raw NAME` with the dev environment's values."""
    values = {
        "cluster_name": "inferstack-dev",
        "compute_mode": mode,
        "karpenter_node_role_name": "inferstack-dev-auto-node" if mode == "auto" else "inferstack-dev-karpenter-node",
        "models_bucket_name": "inferstack-dev-models-111122223333",
        "ecr_gateway_url": "111122223333.dkr.ecr.us-east-1.amazonaws.com/inferstack-dev/gateway",
        "ecr_engine_url": "111122223333.dkr.ecr.us-east-1.amazonaws.com/inferstack-dev/engine",
    }
    cases = "\n".join(f'  {k}) printf %s "{v}" ;;' for k, v in values.items())
    stub = tmp_path / "bin" / "terraform"
    stub.parent.mkdir(parents=True)
    stub.write_text(f'#!/bin/sh\nfor last; do :; done\ncase "$last" in\n{cases}\n  *) exit 1 ;;\nesac\n')
    stub.chmod(0o755)
    return {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}"}


def test_cluster_values_script_writes_what_the_overlays_hold(tmp_path: Path) -> None:
    """The committed cluster/ components are exactly the script's output for terraform/envs/dev (example account)."""
    for mode, name in (("auto", "aws-gpu"), ("karpenter", "aws-gpu-karpenter")):
        out = tmp_path / mode
        env = {**_fake_terraform(tmp_path / f"tf-{mode}", mode), "OUT_DIR": str(out)}
        proc = subprocess.run(
            ["bash", str(K8S / "scripts" / "aws-cluster-values.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        committed = (K8S / "overlays" / name / "cluster" / "kustomization.yaml").read_text()
        assert (out / "kustomization.yaml").read_text() == committed, f"re-run the script for {name}"


def test_cluster_values_script_pins_digests_when_given(tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    env = {**_fake_terraform(tmp_path / "tf", "auto"), "OUT_DIR": str(tmp_path / "out"), "GATEWAY_DIGEST": digest}
    subprocess.run(
        ["bash", str(K8S / "scripts" / "aws-cluster-values.sh")], env=env, check=True, capture_output=True, timeout=30
    )
    assert f"digest: {digest}" in (tmp_path / "out" / "kustomization.yaml").read_text()
