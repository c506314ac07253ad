"""Every image the clusters run that we do not build is scanned by images.yml with the same gate as
ours, at one resolved digest, which is copied into our ECR mirror; publishing waits for that. One
list in three places must agree: images.yml's third-party matrix, terraform/shared's mirrored_images
(the mirror repositories, and the push role's grant: shared/tests) and the images of the rendered
overlays (`kubectl kustomize`, for real). release.py then points each at its mirror (test_release.py)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from ._tools import REPO, WORKFLOWS, run, tool

OVERLAYS = ("aws-gpu", "aws-gpu-karpenter")
IMAGE_LINE = re.compile(r"^\s*(?:-\s+)?image:\s*['\"]?([^'\"\s]+)", re.M)
OURS = re.compile(r"^\d{12}\.dkr\.ecr\.[\w-]+\.amazonaws\.com/inferstack/")


def _images_yml() -> dict[str, Any]:
    return yaml.load((WORKFLOWS / "images.yml").read_text(), Loader=yaml.BaseLoader)  # type: ignore[no-any-return]


def _matrix() -> dict[str, str]:
    """images.yml's third-party matrix: images.json key -> source, as the manifests name it."""
    return {e["name"]: e["source"] for e in _images_yml()["jobs"]["third-party"]["strategy"]["matrix"]["include"]}


def _mirror_module() -> ModuleType:
    scripts = REPO / ".github" / "scripts"
    sys.path.insert(0, str(scripts))  # mirror.py imports registry.py beside it, as when run
    try:
        spec = importlib.util.spec_from_file_location("mirror", scripts / "mirror.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(scripts))


def _terraform_mirrors() -> list[str]:
    """terraform/shared's mirrored_images default (a list of strings: JSON as HCL writes it)."""
    text = (REPO / "terraform" / "shared" / "variables.tf").read_text()
    block = re.search(r'^variable "mirrored_images" \{(.*?)^\}', text, re.M | re.S)
    assert block, "terraform/shared/variables.tf has no mirrored_images"
    default = re.search(r"^\s*default\s*=\s*(\[.*?\])", block[1], re.M | re.S)
    assert default, "mirrored_images has no default list"
    return list(json.loads(default[1]))


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
    assert set(_matrix().values()) == third_party, (
        "images.yml's third-party job and the manifests name different images"
    )
    # The same gate as our images' (test_workflows.py checks that one): mirror.py scan runs Trivy, at
    # the build job's version, with the flags trivy-action gets there (its inputs -> Trivy's options).
    ours = next(
        s["with"] for s in _images_yml()["jobs"]["build"]["steps"]
        if s.get("uses", "").startswith("aquasecurity/trivy-action@") and s["with"].get("exit-code") == "1"
    )  # fmt: skip
    [setup] = [s for s in job["steps"] if s.get("uses", "").startswith("aquasecurity/setup-trivy@")]
    assert setup["with"]["version"] == ours["version"]
    words = list(_mirror_module().TRIVY_GATE)
    gate = {w: ("true" if i + 1 == len(words) or words[i + 1].startswith("--") else words[i + 1])
            for i, w in enumerate(words) if w.startswith("--")}  # fmt: skip
    assert gate["--ignore-unfixed"] == "true"
    assert gate["--severity"] == ours["severity"] and ours["ignore-unfixed"] == "true"
    assert gate["--exit-code"] == ours["exit-code"] == "1" and gate["--format"] == ours["format"]
    [scan] = [s for s in job["steps"] if "mirror.py scan" in s.get("run", "")]
    assert f"--ignorefile {ours['trivyignores']}" in scan["run"]


def test_every_scanned_image_has_a_mirror_and_nothing_else_does() -> None:
    """terraform/shared declares one mirror per scanned image (the push role may write exactly those:
    terraform/shared/tests), named as mirror.py and release.py name it."""
    mirror = _mirror_module()
    expected = sorted(mirror.upstream_repository(source.rpartition(":")[0]) for source in _matrix().values())
    assert sorted(_terraform_mirrors()) == expected
    assert expected == ["docker.io/valkey/valkey", "public.ecr.aws/aws-cli/aws-cli"]


def test_the_scan_and_the_copy_use_the_one_resolved_digest() -> None:
    """Resolved once; the gate and the SBOM read that digest, the copy copies it; the tag is not read
    again. The copy runs after the gate (a failed scan copies nothing) and only when publishing."""
    steps = _images_yml()["jobs"]["third-party"]["steps"]
    names = [s.get("name", s.get("uses", "")) for s in steps]
    [resolve] = [s for s in steps if s.get("id") == "resolve"]
    assert 'mirror.py resolve "$SOURCE"' in resolve["run"] and "$GITHUB_OUTPUT" in resolve["run"]
    [scan] = [s for s in steps if "mirror.py scan" in s.get("run", "")]
    assert scan["env"]["DIGEST"] == "${{ steps.resolve.outputs.digest }}" and "if" not in scan
    assert '--digest "$DIGEST"' in scan["run"] and '--source "$SOURCE"' in scan["run"]
    [copy] = [s for s in steps if "mirror.py copy" in s.get("run", "")]
    assert copy["env"]["DIGEST"] == "${{ steps.resolve.outputs.digest }}"
    assert '--digest "$DIGEST"' in copy["run"] and '--source "$SOURCE"' in copy["run"]
    assert copy["if"] == "env.PUBLISH_THIS == 'true'"
    assert names.index(copy["name"]) > names.index(scan["name"])
    # No other scanner step: every platform goes through mirror.py scan (test_mirror_pipeline.py runs it).
    assert not [s for s in steps if s.get("uses", "").startswith("aquasecurity/trivy-action@")]
    [record] = [s for s in steps if s.get("with", {}).get("name") == "record-${{ matrix.name }}"]
    assert record["with"]["path"] == "record/${{ matrix.name }}.json" and record["if"] == copy["if"]


def test_images_json_counts_the_mirrors() -> None:
    """record's check of images.json: our two published images and one mirror per matrix entry."""
    merge = next(s for s in _images_yml()["jobs"]["record"]["steps"] if s.get("id") == "merge")["run"]
    [count] = re.findall(r"jq 'length' images.json\)\" -eq (\d+)", merge)
    assert int(count) == 2 + len(_matrix())


def test_publishing_waits_for_the_third_party_scan() -> None:
    """record is the job whose output (images.json) deploy.yml rolls out: no scan, no release."""
    needs = _images_yml()["jobs"]["record"]["needs"]
    assert "third-party" in ([needs] if isinstance(needs, str) else needs)


def test_the_sidecar_image_is_the_one_the_fleet_generator_writes(third_party: set[str]) -> None:
    from inferstack_fleet.manifests import ADAPTER_SYNC_IMAGE

    assert ADAPTER_SYNC_IMAGE in third_party
    generated = (REPO / "k8s" / "fleet" / "generated").glob("*.yaml")
    assert any(ADAPTER_SYNC_IMAGE in Path(p).read_text() for p in generated)
