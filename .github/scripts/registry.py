"""The pipeline's registry operations on ECR, through the `aws` CLI (no image is pulled or rebuilt).

    python .github/scripts/registry.py existing <repo>:<tag>
        prints `digest=sha256:...` when the tag is already in the registry, `digest=` when not
        (images.yml appends it to $GITHUB_OUTPUT: a re-run of a publish skips the push, because
        tags are immutable and the image already published for this commit is the one to ship)
    python .github/scripts/registry.py promote --images '{"gateway": "<repo>@sha256:..."}' --tag prod-<sha>
        adds the tag to each digest (ECR put-image with the same manifest: the bytes dev ran, no
        rebuild); a tag already on that digest is skipped, a tag on another digest is an error.
        Prints the same JSON: what the next environment deploys.

One registry serves every environment (one push role): promotion is a tag, never a copy.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # the OCI tag grammar
ACCEPTED = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
]


class RegistryError(Exception):
    pass


@dataclass(frozen=True)
class Repository:
    account: str
    region: str
    name: str

    @classmethod
    def parse(cls, repo: str) -> Repository:
        host, _, name = repo.partition("/")
        m = ECR_HOST.match(host)
        if not m or not name:
            raise RegistryError(f"not an ECR repository: {repo}")
        return cls(m["account"], m["region"], name)

    def aws(self, op: str, *args: str) -> tuple[int, Any, str]:
        cmd = ["aws", "ecr", op, "--registry-id", self.account, "--region", self.region]
        cmd += ["--repository-name", self.name, *args, "--output", "json"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        except FileNotFoundError as exc:
            raise RegistryError("the aws CLI is not on PATH") from exc
        body = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None
        return proc.returncode, body, proc.stderr.strip()


def digest_of_tag(repo: Repository, tag: str) -> str | None:
    code, body, err = repo.aws("describe-images", "--image-ids", f"imageTag={tag}")
    if code != 0:
        if "ImageNotFoundException" in err:
            return None
        raise RegistryError(f"describe-images {repo.name}:{tag} failed: {err}")
    return str(body["imageDetails"][0]["imageDigest"])


def existing(ref: str) -> str | None:
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        raise RegistryError(f"expected <repository>:<tag>, got {ref}")
    return digest_of_tag(Repository.parse(name), tag)


def promote(images: dict[str, str], tag: str) -> dict[str, str]:
    if not TAG.match(tag):
        raise RegistryError(f"not a valid tag: {tag!r}")
    for key, ref in images.items():
        name, _, digest = ref.partition("@")
        if not DIGEST.match(digest):
            raise RegistryError(f"{key} is not pinned to a digest: {ref}")
        repo = Repository.parse(name)
        current = digest_of_tag(repo, tag)
        if current == digest:
            print(f"{key}: {name}:{tag} is already {digest}: nothing to do", file=sys.stderr)
            continue
        if current is not None:
            raise RegistryError(f"{key}: {name}:{tag} is {current}, not {digest}; tags are immutable")
        code, body, err = repo.aws(
            "batch-get-image", "--image-ids", f"imageDigest={digest}", "--accepted-media-types", *ACCEPTED
        )
        if code != 0 or not body or not body.get("images"):
            raise RegistryError(f"{key}: {ref} is not in the registry: {err or body}")
        image = body["images"][0]
        code, _, err = repo.aws(
            "put-image",
            "--image-tag",
            tag,
            "--image-digest",
            digest,
            "--image-manifest",
            image["imageManifest"],
            "--image-manifest-media-type",
            image["imageManifestMediaType"],
        )
        if code != 0:
            raise RegistryError(f"{key}: tagging {ref} as {tag} failed: {err}")
        print(f"{key}: {name}:{tag} -> {digest}", file=sys.stderr)
    return images


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("existing", help="the digest a tag already points at, as digest=... for $GITHUB_OUTPUT")
    e.add_argument("ref", help="<ecr repository>:<tag>")
    pr = sub.add_parser("promote", help="tag the digests an environment verified, for the next one")
    pr.add_argument("--images", required=True, help='{"gateway": "<repo>@sha256:...", ...}')
    pr.add_argument("--tag", required=True)
    args = p.parse_args(argv)
    try:
        if args.command == "existing":
            print(f"digest={existing(args.ref) or ''}")
        else:
            images = json.loads(args.images)
            if not isinstance(images, dict) or not images:
                raise RegistryError("--images must be a JSON object of image references")
            print(json.dumps(promote({str(k): str(v) for k, v in images.items()}, args.tag)))
    except (RegistryError, json.JSONDecodeError) as exc:
        print(f"::error::{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
