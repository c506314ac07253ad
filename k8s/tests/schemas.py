"""Schemas to validate rendered objects against, all offline.

- Built-in kinds: the Kubernetes OpenAPI schema of the target version, via `kubernetes-validate`
  in strict mode (unknown fields are errors, as with `kubectl apply`'s default strict validation).
- Custom resources: the upstream CRDs in ../shared/crds (pinned versions in its README; see
  CRD_DIRS). Unknown fields are made errors too: the API server would prune them silently, which
  is how a typo in a NodePool goes unnoticed.
- EKS Auto Mode's NodeClass: AWS publishes no CRD, so EKS_NODECLASS transcribes the documented
  specification: https://docs.aws.amazon.com/eks/latest/userguide/create-node-class.html
  ("Node Class Specification"; source awsdocs/amazon-eks-user-guide,
  latest/ug/automode/create-node-class.adoc).
- EKS Auto Mode's IngressClassParams: no CRD either. AWS documents it as the AWS Load Balancer
  Controller's IngressClassParams (whose CRD is in ../shared/crds) with three fields renamed
  (latest/ug/automode/auto-configure-alb.adoc, "IngressClassParams"): eks_ingressclassparams_schema()
  applies exactly those renames to the controller's schema.
"""

from __future__ import annotations

import copy
import os
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .manifests import REPO

# The EKS version Terraform pins (terraform/envs/*/main.tf kubernetes_version).
KUBERNETES_VERSION = "1.35.0"

# ../shared/crds next to the repository (these machines); K8S_CRD_DIR overrides it (CI fetches
# the same pinned files there: k8s/README.md, "Validation").
CRD_DIRS = [Path(p) for p in (os.environ.get("K8S_CRD_DIR", ""), REPO.parent / "shared" / "crds") if p]


def crd_dir() -> Path:
    for d in CRD_DIRS:
        if d.is_dir() and any(d.glob("*.yaml")):
            return d
    raise FileNotFoundError(f"no CRD directory found (looked in {[str(d) for d in CRD_DIRS]}); see k8s/README.md")


def _strict(schema: Any) -> Any:
    """Copy of an OpenAPI v3 schema where objects with declared properties reject unknown ones."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema of the object, from every CRD file."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(crd_dir().glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                # apiVersion/kind/metadata are checked by the API server, not the CRD schema.
                schema.setdefault("properties", {}).pop("metadata", None)
                schema["properties"]["metadata"] = {"type": "object"}
                schemas[(f"{group}/{version['name']}", kind)] = _strict(schema)
    return schemas


@cache
def _crd_scopes() -> dict[tuple[str, str], str]:
    scopes = {}
    for path in sorted(crd_dir().glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if crd:
                scopes[(crd["spec"]["group"], crd["spec"]["names"]["kind"])] = str(crd["spec"]["scope"])
    return scopes


def crd_scope(api_version: str, kind: str) -> str:
    return _crd_scopes()[(api_version.split("/")[0], kind)]


_selector_terms = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
}

# The documented NodeClass spec. Ranges are AWS's: size 1-59000Gi (or G/Ti/T equivalents),
# iops 3000-16000, throughput 125-1000, noProxy at most 50 entries; role and the subnet and
# security group selectors are listed as required.
EKS_NODECLASS: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "eks.amazonaws.com/v1"},
        "kind": {"const": "NodeClass"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            # "Do not name your custom node class `default`."
            "properties": {"name": {"type": "string", "not": {"const": "default"}}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["role", "subnetSelectorTerms", "securityGroupSelectorTerms"],
            "properties": {
                "role": {"type": "string", "minLength": 1},
                "subnetSelectorTerms": _selector_terms,
                "securityGroupSelectorTerms": _selector_terms,
                "snatPolicy": {"enum": ["Random", "Disabled"]},
                "networkPolicy": {"enum": ["DefaultAllow", "DefaultDeny"]},
                "networkPolicyEventLogs": {"enum": ["Disabled", "Enabled"]},
                "ephemeralStorage": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "size": {"type": "string", "pattern": r"^[1-9][0-9]*(Gi|G|Ti|T)$"},
                        "iops": {"type": "integer", "minimum": 3000, "maximum": 16000},
                        "throughput": {"type": "integer", "minimum": 125, "maximum": 1000},
                        "kmsKeyID": {"type": "string"},
                    },
                },
                "advancedNetworking": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "httpsProxy": {"type": "string", "maxLength": 255},
                        "noProxy": {"type": "array", "maxItems": 50, "items": {"type": "string", "maxLength": 255}},
                    },
                },
                "certificateBundles": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "data"],
                        "properties": {"name": {"type": "string"}, "data": {"type": "string"}},
                    },
                },
                "tags": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    # Tag keys AWS reserves for itself.
                    "propertyNames": {
                        "not": {
                            "anyOf": [
                                {"pattern": "^kubernetes\\.io/cluster/"},
                                {
                                    "enum": [
                                        "karpenter.sh/provisioner-name",
                                        "karpenter.sh/nodepool",
                                        "karpenter.sh/nodeclaim",
                                        "karpenter.sh/managed-by",
                                        "eks.amazonaws.com/nodeclass",
                                    ]
                                },
                            ]
                        }
                    },
                },
            },
        },
    },
}

# Maximum ephemeralStorage sizes per unit (the documented ranges).
EPHEMERAL_MAX = {"Gi": 59000, "G": 64000, "Ti": 58, "T": 64}


def validate_eks_nodeclass(obj: dict[str, Any]) -> None:
    jsonschema.validate(obj, EKS_NODECLASS)
    size = obj["spec"].get("ephemeralStorage", {}).get("size")
    if size:
        unit = size.lstrip("0123456789")
        if int(size[: -len(unit)]) > EPHEMERAL_MAX[unit]:
            raise jsonschema.ValidationError(f"ephemeralStorage.size {size} above the documented maximum")


# AWS's table "IngressClassParams: Previous -> New" (auto-configure-alb.adoc).
_AUTO_MODE_RENAMES = {("certificateArn",): "certificateARNs", ("subnets", "tags"): "matchTags"}


def eks_ingressclassparams_schema() -> dict[str, Any]:
    """Auto Mode's eks.amazonaws.com/v1 IngressClassParams: the controller's schema, renamed."""
    schema = copy.deepcopy(crd_schemas()[("elbv2.k8s.aws/v1beta1", "IngressClassParams")])
    spec = schema["properties"]["spec"]
    for path, new in _AUTO_MODE_RENAMES.items():
        parent = spec
        for key in path[:-1]:
            parent = parent["properties"][key]
        parent["properties"][new] = parent["properties"].pop(path[-1])
    listeners = spec["properties"]["listeners"]["items"]["properties"]
    listeners["attributes"] = listeners.pop("listenerAttributes")
    return schema
