"""The third-party mirror step (.github/scripts/mirror.py) run for real against `skopeo` and `aws`
shims: an upstream registry whose tag can be re-pushed, and an ECR with immutable tags. The tag is
resolved once (to the sha256 of the manifest bytes served); the copy takes that digest, never the
tag, so a tag re-pushed between the scan and the copy changes nothing; a re-run copies nothing."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from ._shims import Shims
from ._tools import REPO, run

MIRROR_PY = REPO / ".github" / "scripts" / "mirror.py"
PREFIX = "210987654321.dkr.ecr.eu-west-1.amazonaws.com/inferstack"
# The mirrors terraform/shared declares (ECR repository names, without the registry host).
VALKEY_MIRROR = "inferstack/mirror/docker.io/valkey/valkey"
AWS_CLI_MIRROR = "inferstack/mirror/public.ecr.aws/aws-cli/aws-cli"


def _index(revision: str) -> str:
    """A multi-platform image index as a registry serves it (bytes matter: they are what is hashed)."""
    manifests: list[dict[str, Any]] = [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + c * 64,
            "size": 1000,
            "platform": {"os": "linux", "architecture": arch},
        }
        for c, arch in (("a", "amd64"), ("b", "arm64"))
    ]
    # What buildx adds to an index (as Docker Hub's official images have): no image, never scanned.
    manifests.append(
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + "c" * 64,
            "size": 800,
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
        }
    )
    return (
        json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests},
            indent=3,
        )
        + f"\n{' ' * len(revision)}"
    )


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _registries(tmp_path: Path, ecr: dict[str, dict[str, str]] | None = None) -> tuple[Shims, str]:
    old = _index("first push")
    upstream = {
        "valkey/valkey": {"tags": {"8.1.4-alpine": _digest(old)}, "manifests": {_digest(old): old}},
        "public.ecr.aws/aws-cli/aws-cli": {"tags": {"2.22.0": _digest(old)}, "manifests": {_digest(old): old}},
    }
    state: dict[str, Any] = {"upstream": upstream, "ecr": ecr or {VALKEY_MIRROR: {}, AWS_CLI_MIRROR: {}}}
    return Shims(tmp_path, state).add("skopeo", "aws", "docker", "crane"), _digest(old)


def _mirror(shims: Shims, *args: str) -> tuple[int, str, str]:
    done = run([sys.executable, str(MIRROR_PY), *args], env=shims.env())
    return done.returncode, done.stdout, done.stderr


def _copy(shims: Shims, digest: str, source: str = "valkey/valkey:8.1.4-alpine") -> tuple[int, str, str]:
    name = "valkey" if source.startswith("valkey") else "adapter-sync"
    return _mirror(shims, "copy", "--name", name, "--source", source, "--digest", digest, "--prefix", PREFIX)


def test_resolve_hashes_the_manifest_the_registry_serves(tmp_path: Path) -> None:
    shims, digest = _registries(tmp_path)
    code, out, err = _mirror(shims, "resolve", "valkey/valkey:8.1.4-alpine")
    assert code == 0, err
    # Lines for $GITHUB_OUTPUT; the platforms are the index's images, not its attestation entry.
    assert out == f'digest={digest}\nref=valkey/valkey@{digest}\nplatforms=["linux/amd64", "linux/arm64"]\n'
    assert "linux/amd64, linux/arm64" in err
    assert shims.calls() == [
        ["skopeo", "inspect", "--raw", "--retry-times", "3", "docker://valkey/valkey:8.1.4-alpine"]
    ]


def test_resolve_refuses_what_cannot_be_pinned(tmp_path: Path) -> None:
    shims, digest = _registries(tmp_path)
    state = shims.state
    schema1 = json.dumps({"schemaVersion": 1, "name": "valkey/valkey", "tag": "old"})
    state["upstream"]["valkey/valkey"]["tags"]["old"] = _digest(schema1)
    state["upstream"]["valkey/valkey"]["manifests"][_digest(schema1)] = schema1
    shims.state_file.write_text(json.dumps(state))
    code, _, err = _mirror(shims, "resolve", "valkey/valkey:old")
    assert code == 1 and "unsupported manifest (schemaVersion 1" in err
    code, _, err = _mirror(shims, "resolve", f"valkey/valkey@{digest}")
    assert code == 1 and "name the upstream tag" in err
    code, _, err = _mirror(shims, "resolve", "valkey/valkey:missing")
    assert code == 1 and "manifest unknown" in err


def test_the_scanned_digest_is_copied_even_when_the_tag_moved(tmp_path: Path) -> None:
    shims, scanned = _registries(tmp_path)
    code, out, _ = _mirror(shims, "resolve", "valkey/valkey:8.1.4-alpine")
    assert f"digest={scanned}" in out
    # Upstream re-pushes the tag after the scan (a rebuilt base image): a new digest behind the same tag.
    state = shims.state
    newer = _index("second push")
    state["upstream"]["valkey/valkey"]["tags"]["8.1.4-alpine"] = _digest(newer)
    state["upstream"]["valkey/valkey"]["manifests"][_digest(newer)] = newer
    shims.state_file.write_text(json.dumps(state))

    code, out, err = _copy(shims, scanned)
    assert code == 0, err
    tag = f"8.1.4-alpine-{scanned[7:19]}"
    assert json.loads(out) == {
        "image": "valkey",
        "source": "valkey/valkey:8.1.4-alpine",
        "repository": f"{PREFIX}/mirror/docker.io/valkey/valkey",
        "tag": tag,
        "digest": scanned,
    }
    assert shims.state["ecr"][VALKEY_MIRROR] == {tag: scanned}, "the mirror holds the scanned digest"
    [copy] = shims.calls("skopeo")[1:]
    # By digest, the whole index (its digest kept), into the mirror under the tag that names it.
    assert copy[-2:] == [f"docker://valkey/valkey@{scanned}", f"docker://{PREFIX}/mirror/docker.io/valkey/valkey:{tag}"]
    assert {"--all", "--preserve-digests"} <= set(copy)


def test_a_rerun_copies_nothing(tmp_path: Path) -> None:
    shims, digest = _registries(tmp_path)
    first = _copy(shims, digest)
    assert first[0] == 0, first[2]
    again = _copy(shims, digest)
    assert again[0] == 0, again[2]
    assert again[1] == first[1], "the same record"
    assert "nothing to copy" in again[2]
    assert len(shims.calls("skopeo")) == 1, "one copy for two runs"


def test_the_sidecar_goes_to_its_own_mirror(tmp_path: Path) -> None:
    shims, digest = _registries(tmp_path)
    code, out, err = _copy(shims, digest, source="public.ecr.aws/aws-cli/aws-cli:2.22.0")
    assert code == 0, err
    assert json.loads(out)["repository"] == f"{PREFIX}/mirror/public.ecr.aws/aws-cli/aws-cli"
    assert shims.state["ecr"][AWS_CLI_MIRROR] == {f"2.22.0-{digest[7:19]}": digest}
    assert shims.state["ecr"][VALKEY_MIRROR] == {}


def test_refuses_a_mirror_tag_on_another_digest(tmp_path: Path) -> None:
    _, digest = _registries(tmp_path / "probe")
    other = "sha256:" + "e" * 64
    shims, _ = _registries(tmp_path, ecr={VALKEY_MIRROR: {f"8.1.4-alpine-{digest[7:19]}": other}})
    code, _, err = _copy(shims, digest)
    assert code == 1 and "tags are immutable" in err
    assert not shims.calls("skopeo")


def test_fails_when_the_mirror_does_not_hold_the_scanned_digest(tmp_path: Path) -> None:
    """The check after the copy: a registry that stored another digest than the one copied (the shim's
    `rewrites`) must fail the step, and nothing is recorded for images.json."""
    shims, digest = _registries(tmp_path)
    state = shims.state
    state["rewrites"] = True
    shims.state_file.write_text(json.dumps(state))
    code, out, err = _copy(shims, digest)
    assert code == 1 and out == ""
    assert f"not the scanned {digest}" in err


def test_fails_without_the_mirror_repository(tmp_path: Path) -> None:
    """Terraform did not declare the mirror (and the push role could not write it): no copy."""
    shims, digest = _registries(tmp_path)
    state = shims.state
    del state["ecr"][VALKEY_MIRROR]
    shims.state_file.write_text(json.dumps(state))
    code, out, err = _copy(shims, digest)
    assert code == 1 and out == ""
    assert "RepositoryNotFoundException" in err
    assert not shims.calls("skopeo")


def test_refuses_a_destination_outside_ecr(tmp_path: Path) -> None:
    shims, digest = _registries(tmp_path)
    code, _, err = _mirror(
        shims, "copy", "--name", "valkey", "--source", "valkey/valkey:8.1.4-alpine", "--digest", digest,
        "--prefix", "docker.io/someone",
    )  # fmt: skip
    assert code == 1 and "not an ECR repository" in err
    assert not shims.calls()


def _serve(shims: Shims, text: str, tag: str = "odd") -> None:
    state = shims.state
    state["upstream"]["valkey/valkey"]["tags"][tag] = _digest(text)
    state["upstream"]["valkey/valkey"]["manifests"][_digest(text)] = text
    shims.state_file.write_text(json.dumps(state))


def test_resolve_refuses_an_index_whose_images_it_cannot_list(tmp_path: Path) -> None:
    """Every platform image is scanned, so each must be named and be an image: a nested index, an
    entry without a platform or an index of attestations only cannot pass unscanned."""
    shims, _ = _registries(tmp_path)
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "d" * 64, "size": 9}
    amd64 = {"os": "linux", "architecture": "amd64"}
    nested = {**entry, "mediaType": "application/vnd.oci.image.index.v1+json", "platform": amd64}
    attestation = {**entry, "platform": {"os": "unknown", "architecture": "unknown"},
                   "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}  # fmt: skip
    for entries, error in (([nested], "not a platform image"), ([entry], "names no platform"),
                           ([attestation], "holds no platform image")):  # fmt: skip
        _serve(shims, json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                  "manifests": entries}))  # fmt: skip
        code, out, err = _mirror(shims, "resolve", "valkey/valkey:odd")
        assert code == 1 and out == "" and error in err, (entries, err)


def test_a_single_platform_image_is_one_image_to_scan(tmp_path: Path) -> None:
    shims, _ = _registries(tmp_path)
    single = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                         "config": {}, "layers": []})  # fmt: skip
    _serve(shims, single)
    code, out, err = _mirror(shims, "resolve", "valkey/valkey:odd")
    assert code == 0, err
    assert out.endswith('platforms=["image"]\n')


def test_sign_refuses_a_record_that_is_not_the_scanned_digest(tmp_path: Path) -> None:
    """The signature goes on the digest the scan passed, or on nothing: cosign is never called."""
    shims, digest = _registries(tmp_path)
    shims.add("cosign")
    code, out, err = _copy(shims, digest)
    assert code == 0, err
    record = tmp_path / "record.json"
    record.write_text(out)
    scanned = tmp_path / "scanned.json"
    other = "sha256:" + "e" * 64
    scanned.write_text(json.dumps({"source": "valkey/valkey:8.1.4-alpine", "digest": other, "platforms": []}))
    code, _, err = _mirror(shims, "sign", str(record), str(scanned))
    assert code == 1 and "refusing to sign" in err
    assert not shims.calls("cosign")
