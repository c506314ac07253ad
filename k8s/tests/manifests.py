"""Rendering and looking up the Kubernetes objects the overlays produce (helpers for k8s/tests)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("local-cpu", "aws-gpu", "aws-gpu-karpenter")
GPU_OVERLAYS = ("aws-gpu", "aws-gpu-karpenter")
# Cluster-wide pieces k8s/bootstrap.sh applies before the add-ons, per Terraform compute_mode.
PLATFORMS = {"auto": "aws-auto", "karpenter": "aws-karpenter"}
OVERLAY_OF_MODE = {"auto": "aws-gpu", "karpenter": "aws-gpu-karpenter"}
WORKLOADS = ("Deployment", "StatefulSet")

Obj = dict[str, Any]


def kubectl() -> str:
    """kubectl on PATH, else the one scripts/install-k8s.sh puts in .venv-k8s."""
    found = shutil.which("kubectl") or shutil.which("kubectl", path=str(REPO / ".venv-k8s" / "bin"))
    assert found, "kubectl (with kustomize) is needed: run scripts/install-k8s.sh"
    return found


def render(path: Path) -> list[Obj]:
    proc = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"kubectl kustomize {path.relative_to(REPO)} failed:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if o["kind"] in WORKLOADS]


def pod_specs(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(workload, pod spec) for every Deployment and StatefulSet."""
    for o in workloads(objs):
        yield o, o["spec"]["template"]["spec"]


def containers(spec: Obj) -> list[Obj]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def env(container: Obj) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def engines(objs: list[Obj]) -> list[Obj]:
    """Every engine Deployment: the base's single `vllm-engine` (local-cpu) or one per fleet model."""
    return [
        o
        for o in find(objs, "Deployment")
        if o["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "engine"
    ]


def vllm(deployment: Obj) -> Obj:
    """The engine container of an engine Deployment."""
    (c,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm"]
    return c


def engine_names(objs: list[Obj]) -> set[str]:
    return {o["metadata"]["name"] for o in engines(objs)}


def requirement_holds(req: Obj, labels: dict[str, str]) -> bool:
    """One node selector requirement (NodePool requirement or node affinity expression) on a node's labels."""
    op, key, values = req["operator"], req["key"], req.get("values", [])
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt"):
        return key in labels and (
            int(labels[key]) > int(values[0]) if op == "Gt" else int(labels[key]) < int(values[0])
        )
    raise AssertionError(f"unknown operator {op}")
