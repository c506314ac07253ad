"""Every rendered object validates against the schema the cluster will apply (see schemas.py)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from .manifests import REPO, Obj, find, one
from .schemas import (
    KUBERNETES_VERSION,
    crd_dir,
    crd_schemas,
    crd_scope,
    eks_ingressclassparams_schema,
    validate_eks_nodeclass,
)

CUSTOM_GROUPS = ("karpenter.sh", "karpenter.k8s.aws", "keda.sh", "monitoring.coreos.com", "elbv2.k8s.aws")


def is_builtin(o: Obj) -> bool:
    group = o["apiVersion"].split("/")[0] if "/" in o["apiVersion"] else ""
    return group not in (*CUSTOM_GROUPS, "eks.amazonaws.com")


def validation_errors(objs: list[Obj]) -> list[str]:
    """Every object against the schema the API server applies: Kubernetes' own (strict), the CRD's,
    or AWS's documentation for Auto Mode's kinds. Used for everything bootstrap.sh applies too."""
    schemas = crd_schemas()
    errors = []
    for o in objs:
        where = f"{o['kind']}/{o['metadata']['name']}"
        if is_builtin(o):
            try:
                kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{where}: {e.message} at {list(e.path)}")
            continue
        if (o["apiVersion"], o["kind"]) == ("eks.amazonaws.com/v1", "NodeClass"):
            try:
                validate_eks_nodeclass(o)
            except jsonschema.ValidationError as e:
                errors.append(f"{where}: {e.message}")
            continue
        schema: dict[str, Any] | None = schemas.get((o["apiVersion"], o["kind"]))
        if (o["apiVersion"], o["kind"]) == ("eks.amazonaws.com/v1", "IngressClassParams"):
            schema = eks_ingressclassparams_schema()
        if not schema:
            errors.append(f"{where}: no CRD for {o['apiVersion']}: add it to ../shared/crds")
            continue
        errors += [f"{where}: {e.message} at {list(e.path)}" for e in jsonschema.Draft7Validator(schema).iter_errors(o)]
    return errors


def test_builtin_objects_match_the_kubernetes_schema(objs: list[Obj]) -> None:
    assert not validation_errors([o for o in objs if is_builtin(o)])


def test_custom_resources_match_their_crds(objs: list[Obj]) -> None:
    assert not validation_errors([o for o in objs if not is_builtin(o)])


def test_platform_objects_validate(platforms: dict[str, list[Obj]]) -> None:
    for mode, objs in platforms.items():
        assert not validation_errors(objs), mode


def test_eks_nodeclass_matches_the_documented_fields(rendered: dict[str, list[Obj]]) -> None:
    (nodeclass,) = find(rendered["aws-gpu"], "NodeClass")
    validate_eks_nodeclass(nodeclass)


def test_auto_mode_ingressclassparams_use_the_documented_names(rendered: dict[str, list[Obj]]) -> None:
    """Auto Mode renamed three of the controller's fields: its schema must reject the old names."""
    (params,) = find(rendered["aws-gpu"], "IngressClassParams")
    assert params["apiVersion"] == "eks.amazonaws.com/v1"
    schema = eks_ingressclassparams_schema()
    assert not list(jsonschema.Draft7Validator(schema).iter_errors(params))
    old = copy.deepcopy(params)
    old["spec"]["certificateArn"] = ["arn:aws:acm:us-east-1:111122223333:certificate/x"]
    assert list(jsonschema.Draft7Validator(schema).iter_errors(old))


CLUSTER_SCOPED = ("Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass", "IngressClass", "PriorityClass")


def test_scopes_match(objs: list[Obj], platforms: dict[str, list[Obj]]) -> None:
    """Namespaced objects land in a namespace, cluster-scoped custom resources carry none."""
    for o in objs + [o for p in platforms.values() for o in p]:
        group = o["apiVersion"].split("/")[0]
        if group in CUSTOM_GROUPS:
            namespaced = crd_scope(o["apiVersion"], o["kind"]) == "Namespaced"
        elif group == "eks.amazonaws.com":
            namespaced = False  # NodeClass and IngressClassParams are cluster-scoped
        else:
            namespaced = o["kind"] not in CLUSTER_SCOPED
        assert ("namespace" in o["metadata"]) == namespaced, f"{o['kind']}/{o['metadata']['name']}"


# The validators must reject what the cluster would reject, or the tests above prove nothing.


def test_kubernetes_validation_rejects_an_unknown_field(rendered: dict[str, list[Obj]]) -> None:
    deployment = copy.deepcopy(one(rendered["aws-gpu"], "Deployment", "vllm-qwen2-5-7b-instruct"))
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("kind", "name", "breakage"),
    [
        ("NodePool", "gpu", lambda o: o["spec"]["disruption"].update(consolidationPolicy="WhenIdle")),
        ("NodePool", "gpu", lambda o: o["spec"]["template"]["spec"].update(taint=[])),
        ("ScaledObject", "vllm-qwen2-5-7b-instruct", lambda o: o["spec"]["triggers"][0].pop("type")),
        ("PodMonitor", "vllm-engine", lambda o: o["spec"].update(podMetricsEndpoint=[])),
        ("EC2NodeClass", "gpu", lambda o: o["spec"]["metadataOptions"].update(httpTokens="sometimes")),
    ],
)
def test_crd_validation_rejects_broken_objects(
    rendered: dict[str, list[Obj]], kind: str, name: str, breakage: Callable[[Obj], object]
) -> None:
    overlay = "aws-gpu-karpenter"
    o = copy.deepcopy(one(rendered[overlay], kind, name))
    breakage(o)
    schema = crd_schemas()[(o["apiVersion"], o["kind"])]
    assert list(jsonschema.Draft7Validator(schema).iter_errors(o))


@pytest.mark.parametrize(
    "breakage",
    [
        lambda s: s.pop("role"),
        lambda s: s.update(networkPolicy="Deny"),
        lambda s: s["ephemeralStorage"].update(iops=20000),
        lambda s: s["ephemeralStorage"].update(size="60000Gi"),
        lambda s: s.update(amiSelectorTerms=[{"alias": "al2023@latest"}]),  # an EC2NodeClass field
        lambda s: s["tags"].update({"karpenter.sh/nodepool": "x"}),
    ],
)
def test_nodeclass_check_rejects_undocumented_values(
    rendered: dict[str, list[Obj]], breakage: Callable[[Obj], object]
) -> None:
    (nodeclass,) = find(rendered["aws-gpu"], "NodeClass")
    broken = copy.deepcopy(nodeclass)
    breakage(broken["spec"])
    with pytest.raises(jsonschema.ValidationError):
        validate_eks_nodeclass(broken)


def test_ci_fetches_the_same_crds() -> None:
    """k8s/scripts/fetch-crds.sh (for runners without ../shared) names every CRD file used here."""
    script = (REPO / "k8s" / "scripts" / "fetch-crds.sh").read_text()
    fetched = set(re.findall(r"/([\w.]+_\w+\.yaml)\"", script))
    for names, group in re.findall(r"for kind in ([\w ]+); do\n.*/([\w.]+)_\$\{kind\}\.yaml", script):
        fetched |= {f"{group}_{kind}.yaml" for kind in names.split()}
    assert {p.name for p in crd_dir().glob("*.yaml")} <= fetched
