"""Third-party images into our ECR by digest: the digest Trivy scanned is the digest the clusters run.

    python .github/scripts/mirror.py resolve valkey/valkey:8.1.4-alpine
        resolves the tag ONCE and prints `digest=sha256:...` and `ref=valkey/valkey@sha256:...`
        (images.yml appends them to $GITHUB_OUTPUT); the scan and the copy use that digest, never the
        tag again, so a tag re-pushed meanwhile changes nothing. The digest is sha256 of the manifest
        bytes the registry serves (`skopeo inspect --raw`): the index for a multi-platform image.
    python .github/scripts/mirror.py copy --name valkey --source valkey/valkey:8.1.4-alpine \\
            --digest sha256:... --prefix <account>.dkr.ecr.<region>.amazonaws.com/inferstack
        copies exactly that digest, every platform of the index (`skopeo copy --all
        --preserve-digests`: fails rather than rewrite a manifest), to
        <prefix>/mirror/docker.io/valkey/valkey:8.1.4-alpine-<12 hex of the digest>, checks that the
        mirror's tag holds the digest, and prints the record images.yml merges into images.json:
        {"image", "source", "repository", "tag", "digest"}. A re-run finds the tag on that digest and
        copies nothing; the tag on another digest is an error (tags are immutable).

Mirror names keep the upstream registry host (docker.io/valkey/valkey, public.ecr.aws/aws-cli/aws-cli)
so that release.py maps a manifest's image to its mirror without a list. The tag carries the digest
so that a re-pushed upstream tag gets a new tag here instead of colliding with the old one.

Tools: skopeo (on GitHub's ubuntu-24.04 images, 1.13.3 there) and the aws CLI (registry.py). ECR
credentials: the docker config that aws-actions/amazon-ecr-login writes, which skopeo reads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys

from registry import DIGEST, TAG, RegistryError, Repository, digest_of_tag

COMPONENT = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
UPSTREAM = re.compile(rf"^{COMPONENT}(?:/{COMPONENT})+$")  # a host with a port has no ECR name
MANIFEST_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}


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


def resolve(source: str) -> str:
    split_source(source)
    raw = _skopeo("inspect", "--raw", "--retry-times", "3", f"docker://{source}")
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{source}: the registry's manifest is not JSON") from exc
    if not isinstance(manifest, dict):
        raise RegistryError(f"{source}: the registry's manifest is not a JSON object")
    version, media_type = manifest.get("schemaVersion"), manifest.get("mediaType")
    # OCI lets an index or manifest omit mediaType; schema 1 (and anything else) cannot be pinned.
    if version != 2 or media_type not in {None, *MANIFEST_TYPES}:
        raise RegistryError(f"{source}: unsupported manifest (schemaVersion {version}, mediaType {media_type})")
    # The registry addresses a manifest by the sha256 of its bytes: hash exactly what it served.
    return "sha256:" + hashlib.sha256(raw).hexdigest()


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
    c = sub.add_parser("copy", help="copy a scanned digest into our mirror; print its record")
    c.add_argument("--name", required=True, help="the image's key in images.json (valkey, adapter-sync)")
    c.add_argument("--source", required=True, help="<image>:<tag> as the manifests name it")
    c.add_argument("--digest", required=True, help="the digest `resolve` gave and the scan passed")
    c.add_argument("--prefix", required=True, help="<account>.dkr.ecr.<region>.amazonaws.com/<registry prefix>")
    args = p.parse_args(argv)
    try:
        if args.command == "resolve":
            digest = resolve(args.source)
            print(f"{args.source} is {digest}", file=sys.stderr)
            print(f"digest={digest}\nref={split_source(args.source)[0]}@{digest}")
        else:
            print(json.dumps(copy(args.name, args.source, args.digest, args.prefix)))
    except RegistryError as exc:
        print(f"::error::{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
