"""The release step (.github/scripts/release.py) run for real for each environment: Terraform's
outputs come from a shim (a fake account), `aws-cluster-values.sh` and `kubectl kustomize` are the
real ones. Every image must come out pinned by digest to the one registry (third-party images to
their mirror there, at the digest images.yml scanned), on the overlay the environment's compute mode
needs, with no example account left."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from ._shims import Shims
from ._tools import REPO, run

RELEASE = REPO / ".github" / "scripts" / "release.py"
ACCOUNT = "210987654321"
REGISTRY = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/inferstack"
GATEWAY_DIGEST = "sha256:" + "1" * 64
ENGINE_DIGEST = "sha256:" + "2" * 64
VALKEY_DIGEST = "sha256:" + "3" * 64
AWS_CLI_DIGEST = "sha256:" + "4" * 64
# images.yml's records of the third-party images it scanned and copied (mirror.py): key -> mirror.
MIRRORS = {
    "valkey": f"{REGISTRY}/mirror/docker.io/valkey/valkey@{VALKEY_DIGEST}",
    "adapter-sync": f"{REGISTRY}/mirror/public.ecr.aws/aws-cli/aws-cli@{AWS_CLI_DIGEST}",
}
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# The compute mode each environment's Terraform runs (the envs' compute_mode defaults).
MODES = {"dev": "auto", "prod": "karpenter"}
NODE_CLASS = {"auto": "eks.amazonaws.com/v1", "karpenter": "karpenter.k8s.aws/v1"}


def _outputs(env: str) -> dict[str, Any]:
    """A value of the right type for every output the environment declares; the ones the release and
    aws-cluster-values.sh read are realistic (versions.md lists them)."""
    declared = re.findall(r'^output "(\w+)"', (REPO / "terraform" / "envs" / env / "outputs.tf").read_text(), re.M)
    values: dict[str, Any] = {name: f"{name}-{env}" for name in declared}
    cluster = f"inferstack-{env}"
    karpenter = MODES[env] == "karpenter"
    values.update(
        cluster_name=cluster,
        region="eu-west-1",
        compute_mode=MODES[env],
        namespace="inferstack",
        karpenter_version="1.14.1",
        karpenter_node_role_name=f"{cluster}-node",
        karpenter_discovery_tag=cluster,
        models_bucket_name=f"{cluster}-models-{ACCOUNT}",
        ecr_gateway_url=f"{REGISTRY}/gateway",
        ecr_engine_url=f"{REGISTRY}/engine",
        gpu_instance_types=["g6.xlarge", "g5.xlarge"] if env == "dev" else ["g6e.xlarge", "g6e.2xlarge"],
        engine_resources={"cpu": "3", "memory": "12Gi", "gpus": 1},
        update_kubeconfig_command=f"aws eks update-kubeconfig --name {cluster} --region eu-west-1",
        lb_controller_role_arn=f"arn:aws:iam::{ACCOUNT}:role/{cluster}-lb-controller" if karpenter else None,
        acm_certificate_arn=None,
        gateway_url=None,
        redis_url=None,
        network_policy_enforced=True,
        vpc_id="vpc-0123456789abcdef0",
        vpc_cidr="10.40.0.0/16",
        private_subnet_ids=["subnet-0a", "subnet-0b"],
    )
    return values


def _images(gateway_repo: str = f"{REGISTRY}/gateway", **mirrors: str | None) -> str:
    """images.yml's images.json; a mirror given as None is left out."""
    images = {"gateway": f"{gateway_repo}@{GATEWAY_DIGEST}", "engine-gpu": f"{REGISTRY}/engine@{ENGINE_DIGEST}"}
    images |= {k: v for k, v in (MIRRORS | mirrors).items() if v is not None}
    return json.dumps(images)


def _release(tmp_path: Path, env: str, images: str) -> tuple[int, str, Shims]:
    # No registry here: the docker, skopeo and crane shims record (and fail) any attempt to resolve or copy.
    state = {"terraform_outputs": _outputs(env)}
    shims = Shims(tmp_path / "shims", state).add("terraform", "docker", "skopeo", "crane")
    out = tmp_path / "release"
    result = run(
        [sys.executable, str(RELEASE), "--env", env, "--images", images, "--out", str(out)],
        env=shims.env(GITHUB_SHA=COMMIT),
    )
    return result.returncode, result.stdout + result.stderr, shims


@pytest.mark.parametrize("env", sorted(MODES))
def test_every_image_is_pinned_to_the_one_registry(env: str, tmp_path: Path) -> None:
    code, output, shims = _release(tmp_path, env, _images())
    assert code == 0, output
    manifest = (tmp_path / "release" / "release.yaml").read_text()
    images = set(re.findall(r"^\s*(?:-\s+)?image:\s*(\S+)", manifest, re.M))
    assert images, "the release has no containers"
    for ref in images:
        assert re.search(r"@sha256:[0-9a-f]{64}$", ref), f"{env}: not pinned by digest: {ref}"
    ours = {ref for ref in images if ref.startswith((f"{REGISTRY}/gateway", f"{REGISTRY}/engine"))}
    assert all(f":sha-{COMMIT}@" in ref for ref in ours), ours  # the tag images.yml pushed, beside the digest
    assert {re.sub(r":[^/@]+@", "@", ref) for ref in ours} == {
        f"{REGISTRY}/gateway@{GATEWAY_DIGEST}",
        f"{REGISTRY}/engine@{ENGINE_DIGEST}",
    }, ours
    assert "111122223333" not in manifest, f"{env}: the example account is still deployed"
    assert f"inferstack-{env}-models-{ACCOUNT}" in manifest, "this cluster's model bucket"
    # The GPU nodes the environment's compute mode uses: Auto Mode NodeClass or Karpenter's EC2NodeClass.
    assert f"apiVersion: {NODE_CLASS[MODES[env]]}" in manifest
    other = next(v for m, v in NODE_CLASS.items() if m != MODES[env])
    assert f"apiVersion: {other}" not in manifest
    # Third-party images come from their mirror in our registry, at the digest images.yml scanned and
    # copied (the tag mirror.py gave it beside); no upstream registry is named, nothing is resolved.
    assert images - ours == {
        f"{REGISTRY}/mirror/docker.io/valkey/valkey:8.1.4-alpine-333333333333@{VALKEY_DIGEST}",
        f"{REGISTRY}/mirror/public.ecr.aws/aws-cli/aws-cli:2.22.0-444444444444@{AWS_CLI_DIGEST}",
    }, images - ours
    for upstream in ("valkey/valkey", "docker.io", "public.ecr.aws/aws-cli"):
        assert not re.search(rf"image:\s*['\"]?{re.escape(upstream)}", manifest), f"{env}: {upstream} is deployed"
    assert shims.calls() == [c for c in shims.calls() if c[0] == "terraform"], "no registry was asked"
    # The checkout is untouched: the cluster values went into the work directory's copy.
    assert "111122223333" in (REPO / "k8s" / "overlays" / "aws-gpu" / "cluster" / "kustomization.yaml").read_text()


def test_refuses_images_from_another_registry(tmp_path: Path) -> None:
    code, output, _ = _release(
        tmp_path, "prod", _images(gateway_repo="999999999999.dkr.ecr.us-east-1.amazonaws.com/x/gateway")
    )
    assert code == 1
    assert "one registry for every environment" in output


def test_refuses_images_without_a_digest(tmp_path: Path) -> None:
    images = json.dumps({"gateway": f"{REGISTRY}/gateway:sha-abc", "engine-gpu": f"{REGISTRY}/engine@{ENGINE_DIGEST}"})
    code, output, _ = _release(tmp_path, "dev", images)
    assert code == 1
    assert "gateway is not pinned to a digest" in output


def test_refuses_a_third_party_image_without_its_mirror(tmp_path: Path) -> None:
    """An images.json without the sidecar's record (its scan-and-copy did not run) cannot ship it."""
    code, output, shims = _release(tmp_path, "dev", _images(**{"adapter-sync": None}))
    assert code == 1
    assert "public.ecr.aws/aws-cli/aws-cli:2.22.0 has no mirror in --images" in output
    assert f"{REGISTRY}/mirror/public.ecr.aws/aws-cli/aws-cli" in output
    assert not (tmp_path / "release" / "release.yaml").exists()
    assert not shims.calls("docker") and not shims.calls("skopeo"), "it must not fall back to the upstream tag"


def test_refuses_a_mirror_in_another_registry(tmp_path: Path) -> None:
    elsewhere = "999999999999.dkr.ecr.us-east-1.amazonaws.com/inferstack/mirror/docker.io/valkey/valkey"
    code, output, _ = _release(tmp_path, "prod", _images(valkey=f"{elsewhere}@{VALKEY_DIGEST}"))
    assert code == 1
    assert f"valkey: mirrored to {elsewhere}, not under {REGISTRY}/mirror/" in output


def test_refuses_a_mirror_without_a_digest(tmp_path: Path) -> None:
    tagged = f"{REGISTRY}/mirror/docker.io/valkey/valkey:8.1.4-alpine"
    code, output, _ = _release(tmp_path, "dev", _images(valkey=tagged))
    assert code == 1
    assert "valkey is not pinned to a digest" in output
