"""Third-party images into our ECR by digest: the digest Trivy scanned is the digest the clusters run.

    python .github/scripts/mirror.py resolve valkey/valkey:8.1.4-alpine
        resolves the tag ONCE and prints `digest=sha256:...`, `ref=valkey/valkey@sha256:...` and
        `platforms=["linux/amd64", ...]` (images.yml appends them to $GITHUB_OUTPUT); the scan and the
        copy use that digest, never the tag again, so a tag re-pushed meanwhile changes nothing. The
        digest is sha256 of the manifest bytes the registry serves (`skopeo inspect --raw`): the index
        for a multi-platform image, whose platform manifests are listed (attestation entries are not
        images and are left out).
    python .github/scripts/mirror.py scan --source valkey/valkey:8.1.4-alpine --digest sha256:... \\
            --ignorefile docker/trivyignore.yaml --out scan
        reads the index BY DIGEST (and checks its bytes hash to it), then runs Trivy on every platform
        manifest of it by its own digest, from the registry (`--image-src remote`): the gate our images
        pass (fixable CRITICAL fails) and an SPDX SBOM per platform into --out. Every platform is
        scanned even after one fails; any failure exits 1, so the copy and the signature (later steps)
        never run. Writes <out>/scanned.json: {"source", "digest", "platforms": [{"platform", "digest",
        "sbom"}]}, which `sign` reads.
    python .github/scripts/mirror.py copy --name valkey --source valkey/valkey:8.1.4-alpine \\
            --digest sha256:... --prefix <account>.dkr.ecr.<region>.amazonaws.com/inferstack
        copies exactly that digest, every platform of the index (`skopeo copy --all
        --preserve-digests`: fails rather than rewrite a manifest), to
        <prefix>/mirror/docker.io/valkey/valkey:8.1.4-alpine-<12 hex of the digest>, checks that the
        mirror's tag holds the digest, and prints the record images.yml merges into images.json:
        {"image", "source", "repository", "tag", "digest"}. A re-run finds the tag on that digest and
        copies nothing; the tag on another digest is an error (tags are immutable).
    python .github/scripts/mirror.py sign record/valkey.json scan/scanned.json
        signs the mirror exactly as images.yml signs our images (keyless cosign, the job's GitHub OIDC
        identity): `cosign sign --yes <repository>@<digest>` of the record, the reference images.json
        carries and deploy-env.yml's verify-signatures.sh checks; then attests each platform's SBOM to
        that platform's manifest in the mirror. Refuses a record whose digest is not the scanned one.

Mirror names keep the upstream registry host (docker.io/valkey/valkey, public.ecr.aws/aws-cli/aws-cli)
so that release.py maps a manifest's image to its mirror without a list. The tag carries the digest
so that a re-pushed upstream tag gets a new tag here instead of colliding with the old one.

Tools: skopeo (on GitHub's ubuntu-24.04 images, 1.13.3 there), the aws CLI (registry.py), trivy
(aquasecurity/setup-trivy) and cosign (sigstore/cosign-installer). ECR credentials: the docker config
that aws-actions/amazon-ecr-login writes, which skopeo and cosign read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from registry import DIGEST, TAG, RegistryError, Repository, digest_of_tag

COMPONENT = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
UPSTREAM = re.compile(rf"^{COMPONENT}(?:/{COMPONENT})+$")  # a host with a port has no ECR name
INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
MANIFEST_TYPES = INDEX_TYPES | {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
# The gate of our own images (images.yml's build job, trivy-action's inputs there): fixable CRITICAL
# findings fail, except those accepted in the reviewed ignore file. tests/delivery compares the two.
TRIVY_GATE = ("--severity", "CRITICAL", "--ignore-unfixed", "--exit-code", "1", "--format", "table")
# The registry's bytes, never an image of that name the runner's Docker daemon happens to hold.
REMOTE = ("--image-src", "remote")
# buildx's provenance/SBOM entries in an index: platform unknown/unknown, no image to scan or run.
ATTESTATION = "attestation-manifest"


def upstream_repository(name: str) -> str:
    """An image name as manifests write it -> with its registry host, as Docker resolves it:
    `valkey/valkey` -> `docker.io/valkey/valkey`, `redis` -> `docker.io/library/redis`."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        full = name
    else:
        full = f"docker.io/{name if rest else 'library/' + name}"
    if not UPSTREAM.match(full):
        raise RegistryError(f"not an image repository name: {name!r}")
    return full


def mirror_repository(prefix: str, name: str) -> str:
    """Where the mirror of upstream image `name` lives in our registry (terraform/modules/registry)."""
    return f"{prefix}/mirror/{upstream_repository(name)}"


def mirror_tag(tag: str, digest: str) -> str:
    """The upstream tag and the digest's first 12 hex digits: one tag per content, <= 128 characters."""
    return f"{tag[:115]}-{digest.removeprefix('sha256:')[:12]}"


def split_source(source: str) -> tuple[str, str]:
    """`name:tag` -> (name, tag). A source is named by its tag: the digest comes from `resolve`."""
    if "@" in source:
        raise RegistryError(f"{source}: name the upstream tag; the digest is what `resolve` finds")
    name, _, tag = source.rpartition(":")
    if not name or "/" in tag or not TAG.match(tag):
        raise RegistryError(f"expected <image>:<tag>, got {source!r}")
    upstream_repository(name)
    return name, tag


def _skopeo(*args: str) -> bytes:
    cmd = ["skopeo", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=900, check=False)
    except FileNotFoundError as exc:
        raise RegistryError("skopeo is not on PATH") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise RegistryError(f"skopeo {args[0]} failed ({proc.returncode}): {err}")
    return proc.stdout


def _manifest(ref: str) -> tuple[bytes, dict[str, Any]]:
    """The manifest bytes the registry serves for `ref` and their JSON; refuses what cannot be pinned."""
    raw = _skopeo("inspect", "--raw", "--retry-times", "3", f"docker://{ref}")
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{ref}: the registry's manifest is not JSON") from exc
    if not isinstance(manifest, dict):
        raise RegistryError(f"{ref}: the registry's manifest is not a JSON object")
    version, media_type = manifest.get("schemaVersion"), manifest.get("mediaType")
    # OCI lets an index or manifest omit mediaType; schema 1 (and anything else) cannot be pinned.
    if version != 2 or media_type not in {None, *MANIFEST_TYPES}:
        raise RegistryError(f"{ref}: unsupported manifest (schemaVersion {version}, mediaType {media_type})")
    return raw, manifest


def _sha256(raw: bytes) -> str:
    # The registry addresses a manifest by the sha256 of its bytes: hash exactly what it served.
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def resolve(source: str) -> tuple[str, list[tuple[str, str]]]:
    """The tag's digest now, read once, and the platform images of that index."""
    split_source(source)
    raw, manifest = _manifest(source)
    digest = _sha256(raw)
    return digest, platforms(manifest, digest)


def platforms(manifest: dict[str, Any], digest: str) -> list[tuple[str, str]]:
    """(os/arch[/variant], manifest digest) of every image in an index; a single-platform manifest is
    one image, named "image", at its own digest. Every one is what some node could pull: all are scanned."""
    if "manifests" not in manifest:
        return [("image", digest)]
    found: list[tuple[str, str]] = []
    for entry in manifest["manifests"]:
        if not isinstance(entry, dict):
            raise RegistryError(f"{digest}: an index entry is not an object")
        if (entry.get("annotations") or {}).get("vnd.docker.reference.type") == ATTESTATION:
            continue
        plat, child = entry.get("platform") or {}, str(entry.get("digest", ""))
        if entry.get("mediaType") in INDEX_TYPES or not DIGEST.match(child):
            raise RegistryError(f"{digest}: entry {child or '?'} is not a platform image (nested index?)")
        name = "/".join(str(plat[k]) for k in ("os", "architecture", "variant") if plat.get(k))
        if not plat.get("os") or not plat.get("architecture"):
            raise RegistryError(f"{digest}: entry {child} names no platform")
        found.append((name, child))
    if not found:
        raise RegistryError(f"{digest}: the index holds no platform image")
    return found


def _trivy(*args: str) -> int:
    try:
        return subprocess.run(["trivy", *args], timeout=1800, check=False).returncode
    except FileNotFoundError as exc:
        raise RegistryError("trivy is not on PATH") from exc


def scan(source: str, digest: str, ignorefile: Path, out: Path) -> dict[str, Any]:
    name, _ = split_source(source)
    if not DIGEST.match(digest):
        raise RegistryError(f"not a digest: {digest!r}")
    if not ignorefile.is_file():
        raise RegistryError(f"no ignore file {ignorefile}")
    raw, manifest = _manifest(f"{name}@{digest}")
    if _sha256(raw) != digest:
        raise RegistryError(f"{name}@{digest}: the registry served other bytes ({_sha256(raw)})")
    out.mkdir(parents=True, exist_ok=True)
    scanned, failed = [], []
    for plat, child in platforms(manifest, digest):
        ref = f"{name}@{child}"
        print(f"::group::{source} {plat} ({child})", file=sys.stderr, flush=True)
        if _trivy("image", *REMOTE, *TRIVY_GATE, "--ignorefile", str(ignorefile), ref) != 0:
            failed.append(f"{plat} ({child})")
        sbom = out / f"{plat.replace('/', '-')}-{child[7:19]}.spdx.json"  # one platform may appear twice
        if _trivy("image", *REMOTE, "--format", "spdx-json", "--output", str(sbom), "--exit-code", "0", ref) != 0:
            failed.append(f"{plat} ({child}): no SBOM")
        print("::endgroup::", file=sys.stderr, flush=True)
        scanned.append({"platform": plat, "digest": child, "sbom": str(sbom)})
    if failed:
        raise RegistryError(f"{source}@{digest}: the scan failed for " + ", ".join(failed))
    result = {"source": source, "digest": digest, "platforms": scanned}
    (out / "scanned.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def sign(record_file: Path, scanned_file: Path) -> str:
    """Sign the mirror's digest as images.yml signs ours; returns the reference signed."""
    try:
        record, scanned = json.loads(record_file.read_text()), json.loads(scanned_file.read_text())
        repository, digest = str(record["repository"]), str(record["digest"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"no usable record and scan result ({record_file}, {scanned_file}): {exc}") from exc
    if digest != scanned.get("digest") or record.get("source") != scanned.get("source"):
        raise RegistryError(f"{record_file} is {record.get('source')}@{digest}, but the scan passed "
                            f"{scanned.get('source')}@{scanned.get('digest')}: refusing to sign")  # fmt: skip
    Repository.parse(repository)
    ref = f"{repository}@{digest}"
    _cosign("sign", "--yes", ref)
    for plat in scanned["platforms"]:
        _cosign("attest", "--yes", "--type", "spdxjson", "--predicate", plat["sbom"], f"{repository}@{plat['digest']}")
    print(f"signed {ref}", file=sys.stderr)
    return ref


def _cosign(*args: str) -> None:
    try:
        proc = subprocess.run(["cosign", *args], timeout=600, check=False)
    except FileNotFoundError as exc:
        raise RegistryError("cosign is not on PATH") from exc
    if proc.returncode != 0:
        raise RegistryError(f"cosign {args[0]} {args[-1]} failed ({proc.returncode})")


def copy(image: str, source: str, digest: str, prefix: str) -> dict[str, str]:
    name, tag = split_source(source)
    if not DIGEST.match(digest):
        raise RegistryError(f"not a digest: {digest!r}")
    target = mirror_repository(prefix, name)
    repo = Repository.parse(target)
    mtag = mirror_tag(tag, digest)
    current = digest_of_tag(repo, mtag)
    if current is not None and current != digest:
        raise RegistryError(f"{target}:{mtag} is {current}, not {digest}; tags are immutable")
    if current is None:
        # By digest, never by tag: what was scanned is what is copied. --all keeps the index (and so
        # its digest); --preserve-digests fails instead of converting a manifest.
        _skopeo(
            "copy",
            "--all",
            "--preserve-digests",
            "--retry-times",
            "3",
            f"docker://{name}@{digest}",
            f"docker://{target}:{mtag}",
        )
        copied = digest_of_tag(repo, mtag)
        if copied != digest:
            raise RegistryError(f"{target}:{mtag} holds {copied} after the copy, not the scanned {digest}")
        print(f"{image}: copied {name}@{digest} to {target}:{mtag}", file=sys.stderr)
    else:
        print(f"{image}: {target}:{mtag} already holds {digest}: nothing to copy", file=sys.stderr)
    return {"image": image, "source": source, "repository": target, "tag": mtag, "digest": digest}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("resolve", help="the digest an upstream tag points at now, for $GITHUB_OUTPUT")
    r.add_argument("source", help="<image>:<tag> as the manifests name it")
    s = sub.add_parser("scan", help="Trivy's gate and SBOM on every platform of the resolved digest")
    s.add_argument("--source", required=True, help="<image>:<tag> as the manifests name it")
    s.add_argument("--digest", required=True, help="the digest `resolve` gave")
    s.add_argument("--ignorefile", type=Path, required=True, help="the reviewed docker/trivyignore.yaml")
    s.add_argument("--out", type=Path, required=True, help="directory for the SBOMs and scanned.json")
    c = sub.add_parser("copy", help="copy a scanned digest into our mirror; print its record")
    c.add_argument("--name", required=True, help="the image's key in images.json (valkey, adapter-sync)")
    c.add_argument("--source", required=True, help="<image>:<tag> as the manifests name it")
    c.add_argument("--digest", required=True, help="the digest `resolve` gave and the scan passed")
    c.add_argument("--prefix", required=True, help="<account>.dkr.ecr.<region>.amazonaws.com/<registry prefix>")
    g = sub.add_parser("sign", help="cosign-sign the mirror's digest (and attest its SBOMs)")
    g.add_argument("record", type=Path, help="the record `copy` printed")
    g.add_argument("scanned", type=Path, help="the scanned.json `scan` wrote")
    args = p.parse_args(argv)
    try:
        if args.command == "resolve":
            digest, found = resolve(args.source)
            listed = [plat for plat, _ in found]
            print(f"{args.source} is {digest}: {', '.join(listed)}", file=sys.stderr)
            print(f"digest={digest}\nref={split_source(args.source)[0]}@{digest}\nplatforms={json.dumps(listed)}")
        elif args.command == "scan":
            scan(args.source, args.digest, args.ignorefile, args.out)
        elif args.command == "copy":
            print(json.dumps(copy(args.name, args.source, args.digest, args.prefix)))
        else:
            sign(args.record, args.scanned)
    except RegistryError as exc:
        print(f"::error::{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
