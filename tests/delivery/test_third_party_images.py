"""Every image the clusters run that we do not build is scanned by images.yml with the same gate as
ours, and publishing waits for that scan. The overlays are rendered for real (`kubectl kustomize`);
release.py then pins each of these images to its digest (test_release.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._tools import REPO, WORKFLOWS, run, tool

OVERLAYS = ("aws-gpu", "aws-gpu-karpenter")
IMAGE_LINE = re.compile(r"^\s*(?:-\s+)?image:\s*['\"]?([^'\"\s]+)", re.M)
OURS = re.compile(r"^\d{12}\.dkr\.ecr\.[\w-]+\.amazonaws\.com/inferstack/")


def _images_yml() -> dict[str, Any]:
    return yaml.load((WORKFLOWS / "images.yml").read_text(), Loader=yaml.BaseLoader)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def third_party() -> set[str]:
    found: set[str] = set()
    for overlay in OVERLAYS:
        result = run([tool("kubectl"), "kustomize", str(REPO / "k8s" / "overlays" / overlay)])
        assert result.returncode == 0, result.stderr
        found |= {ref for ref in IMAGE_LINE.findall(result.stdout) if not OURS.match(ref)}
    return found


def test_every_third_party_image_the_clusters_run_is_scanned(third_party: set[str]) -> None:
    assert "public.ecr.aws/aws-cli/aws-cli:2.22.0" in third_party  # the engines' adapter-sync sidecar
    job = _images_yml()["jobs"]["third-party"]
    scanned = {entry["ref"] for entry in job["strategy"]["matrix"]["include"]}
    assert scanned == third_party, "images.yml's third-party job and the manifests name different images"
    # The same gate as our images' (test_workflows.py checks that one): fixable CRITICAL fails.
    [gate] = [s for s in job["steps"] if s.get("with", {}).get("exit-code") == "1"]
    assert gate["uses"].startswith("aquasecurity/trivy-action@")
    assert gate["with"]["image-ref"] == "${{ matrix.ref }}"
    assert (gate["with"]["severity"], gate["with"]["ignore-unfixed"]) == ("CRITICAL", "true")
    assert gate["with"]["trivyignores"] == "docker/trivyignore.yaml"


def test_publishing_waits_for_the_third_party_scan() -> None:
    """record is the job whose output (images.json) deploy.yml rolls out: no scan, no release."""
    needs = _images_yml()["jobs"]["record"]["needs"]
    assert "third-party" in ([needs] if isinstance(needs, str) else needs)


def test_the_sidecar_image_is_the_one_the_fleet_generator_writes(third_party: set[str]) -> None:
    from inferstack_fleet.manifests import ADAPTER_SYNC_IMAGE

    assert ADAPTER_SYNC_IMAGE in third_party
    generated = (REPO / "k8s" / "fleet" / "generated").glob("*.yaml")
    assert any(ADAPTER_SYNC_IMAGE in Path(p).read_text() for p in generated)
