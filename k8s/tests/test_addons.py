"""k8s/addons/install.sh: pinned charts, values files that exist, and agreement with the manifests."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from .manifests import K8S, REPO, Obj, find

ADDONS = K8S / "addons"


def _run_install(tmp_path: Path, mode: str) -> list[list[str]]:
    """Run install.sh with stub `helm` and `terraform`; return every helm call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "helm.log"
    (bin_dir / "helm").write_text(f'#!/bin/sh\nprintf "%s\\037" "$@" >> "{log}"\necho >> "{log}"\n')
    (bin_dir / "terraform").write_text('#!/bin/sh\nfor last; do :; done\nprintf "%s" "tf-$last"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", str(ADDONS / "install.sh"), mode], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return [line.rstrip("\x1f").split("\x1f") for line in log.read_text().splitlines() if line]


def _installs(calls: list[list[str]]) -> dict[str, list[str]]:
    return {c[2]: c for c in calls if c[:2] == ["upgrade", "--install"]}


def test_every_chart_is_pinned_with_values_that_exist(tmp_path: Path) -> None:
    installs = _installs(_run_install(tmp_path, "karpenter"))
    assert set(installs) == {"karpenter", "nvidia-device-plugin", "kube-prometheus-stack", "keda", "dcgm-exporter"}
    for release, args in installs.items():
        version = args[args.index("--version") + 1]
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{release}: {version}"
        values = Path(args[args.index("--values") + 1])
        assert values.is_file() and isinstance(yaml.safe_load(values.read_text()), dict), release
    karpenter = installs["karpenter"]
    assert "settings.clusterName=tf-cluster_name" in karpenter
    assert "settings.interruptionQueue=tf-karpenter_interruption_queue_name" in karpenter


def test_auto_mode_installs_no_device_plugin_or_karpenter(tmp_path: Path) -> None:
    installs = _installs(_run_install(tmp_path, "auto"))
    assert set(installs) == {"kube-prometheus-stack", "keda", "dcgm-exporter"}


def test_unknown_mode_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["bash", str(ADDONS / "install.sh"), "gke"], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 64


def test_karpenter_chart_matches_terraform(tmp_path: Path) -> None:
    """Terraform's controller IAM policy is written for one Karpenter release: install that one."""
    version = _installs(_run_install(tmp_path, "karpenter"))["karpenter"]
    pinned = version[version.index("--version") + 1]
    for env in ("dev", "prod"):
        main = (REPO / "terraform" / "envs" / env / "main.tf").read_text()
        assert f'karpenter_version = "{pinned}"' in main, env


def test_keda_queries_the_prometheus_the_addons_install(rendered: dict[str, list[Obj]], tmp_path: Path) -> None:
    prom = _installs(_run_install(tmp_path, "auto"))["kube-prometheus-stack"]
    release, namespace = prom[2], prom[prom.index("--namespace") + 1]
    (so,) = find(rendered["aws-gpu"], "ScaledObject")
    for trigger in so["spec"]["triggers"]:
        assert trigger["metadata"]["serverAddress"] == f"http://{release}-prometheus.{namespace}.svc:9090"
    # Dashboards go where this Grafana's sidecar looks.
    maps = [c for c in find(rendered["aws-gpu"], "ConfigMap") if c["metadata"]["name"].startswith("dashboard-")]
    assert {m["metadata"]["namespace"] for m in maps} == {namespace}


def test_gpu_daemonsets_target_our_gpu_nodes(rendered: dict[str, list[Obj]]) -> None:
    for name in ("nvidia-device-plugin", "dcgm-exporter"):
        values = yaml.safe_load((ADDONS / "values" / f"{name}.yaml").read_text())
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in values["tolerations"]
        for overlay in ("aws-gpu", "aws-gpu-karpenter"):
            (pool,) = find(rendered[overlay], "NodePool")
            labels = pool["spec"]["template"]["metadata"]["labels"]
            assert all(labels.get(k) == v for k, v in values["nodeSelector"].items()), (name, overlay)
