"""Render one environment's release: the right overlay, this cluster's values, every image by digest.

    python .github/scripts/release.py --env dev --images "$IMAGES" --out "$RUNNER_TEMP/release"

What it does, in order (deploy-env.yml's "Render the release" step is exactly this command):
  1. reads the environment's `terraform output` (compute_mode, ecr_gateway_url, ecr_engine_url);
  2. copies k8s/ into --out and runs k8s/scripts/aws-cluster-values.sh there, with the published
     digests, so the overlay's cluster/ values (ECR names, node role, bucket) are this account's and
     the checkout is left alone;
  3. renders the overlay the cluster's compute_mode needs (auto -> overlays/aws-gpu, karpenter ->
     overlays/aws-gpu-karpenter) under a release kustomization that points every third-party image
     (Valkey, the adapter-sync sidecar: the manifests name their upstream tag) at its ECR mirror, at
     the digest images.yml scanned and copied there (mirror.py); nothing is resolved here;
  4. checks the result: our images are exactly the published `repo@sha256:...` (one registry for every
     environment: the cluster's ECR must be the one images.yml pushed to), every image is pinned by
     digest and comes from that registry (no Docker Hub, no public.ecr.aws), and no example account
     (111122223333) is left. Writes <out>/release.yaml.

--images is images.yml's JSON: {"gateway": "<repo>@sha256:...", "engine-gpu": "<repo>@sha256:...",
"valkey": "<prefix>/mirror/docker.io/valkey/valkey@sha256:...", ...}: every key besides ours is a
mirror. Tools on PATH: terraform, kubectl (kustomize), bash. Exit 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from mirror import mirror_repository, mirror_tag
from registry import RegistryError

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = {"auto": "aws-gpu", "karpenter": "aws-gpu-karpenter"}
# images.json key -> the Terraform output naming the ECR repository the cluster pulls it from.
OURS = {"gateway": "ecr_gateway_url", "engine-gpu": "ecr_engine_url"}
EXAMPLE_ACCOUNT = "111122223333"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
IMAGE_LINE = re.compile(r"^\s*(?:-\s+)?image:\s*['\"]?([^'\"\s]+)", re.MULTILINE)


class ReleaseError(Exception):
    pass


def split_ref(ref: str) -> tuple[str, str, str]:
    """`repo[:tag][@digest]` -> (repo, tag, digest); a port in the registry host is not a tag."""
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], digest
    return name, "", digest


def terraform_outputs(tf_dir: Path) -> dict[str, str]:
    proc = _run(["terraform", f"-chdir={tf_dir}", "output", "-json"])
    return {k: v["value"] for k, v in json.loads(proc).items() if isinstance(v.get("value"), str)}


def published(images_json: str) -> dict[str, tuple[str, str]]:
    """images.json -> {key: (repository, digest)}, ours and the mirrors; refuses anything not pinned by digest."""
    try:
        images = json.loads(images_json)
    except json.JSONDecodeError as exc:
        raise ReleaseError(f"--images is not JSON: {exc}") from exc
    if not isinstance(images, dict):
        raise ReleaseError("--images is not a JSON object")
    for key in OURS:
        if not isinstance(images.get(key), str):
            raise ReleaseError(f"--images has no {key!r}")
    out = {}
    for key, ref in images.items():
        repo, _, digest = split_ref(str(ref))
        if not DIGEST.match(digest):
            raise ReleaseError(f"{key} is not pinned to a digest: {ref}")
        out[str(key)] = (repo, digest)
    return out


def pin_entries(base: str, images: dict[str, tuple[str, str]], prefix: str) -> list[str]:
    """The release kustomization's `images:` entries: ours to their published digests; every other image
    to its mirror under <prefix>/mirror/ at the digest images.yml scanned (never to the upstream)."""
    pins = {repo: digest for key, (repo, digest) in images.items() if key in OURS}
    mirrors = {repo: digest for key, (repo, digest) in images.items() if key not in OURS}
    entries: list[str] = []
    problems: list[str] = []
    seen: set[str] = set()
    for ref in sorted(set(IMAGE_LINE.findall(base))):
        repo, tag, digest = split_ref(ref)
        if repo in pins:
            entry = f"  - name: {repo}\n" + (f'    newTag: "{tag}"\n' if tag else "")
            entries.append(entry + f"    digest: {pins[repo]}\n")
            continue
        try:
            target = mirror_repository(prefix, repo)
        except RegistryError as exc:
            problems.append(f"{ref}: {exc}")
            continue
        scanned = mirrors.get(target)
        if scanned is None:
            problems.append(f"{ref} has no mirror in --images: images.yml's third-party job copies it to {target}")
        elif repo in seen:
            problems.append(f"{repo} appears with two tags: one mirror entry cannot pin both")
        elif digest and digest != scanned:
            problems.append(f"{ref}: the manifests pin another digest than the scanned {scanned}")
        else:
            entry = f"  - name: {repo}\n    newName: {target}\n"
            entry += f'    newTag: "{mirror_tag(tag, scanned)}"\n' if tag else ""
            entries.append(entry + f"    digest: {scanned}\n")
        seen.add(repo)
    if problems:
        raise ReleaseError("\n".join(problems))
    return entries


def render(env: str, images_json: str, out: Path, tf_dir: Path | None = None) -> Path:
    tf_dir = tf_dir or REPO / "terraform" / "envs" / env
    images = published(images_json)
    ours = {key: ref for key, ref in images.items() if key in OURS}
    outputs = terraform_outputs(tf_dir)
    mode = outputs.get("compute_mode", "")
    if mode not in OVERLAYS:
        raise ReleaseError(f"{tf_dir}: unknown compute_mode {mode!r}")
    overlay = OVERLAYS[mode]
    problems = [
        f"{key}: published to {repo}, but {env}'s cluster pulls from {outputs.get(OURS[key])} "
        "(one registry for every environment: see .github/workflows/README.md)"
        for key, (repo, _) in ours.items()
        if outputs.get(OURS[key]) != repo
    ]
    # <account>.dkr.ecr.<region>.amazonaws.com/<prefix>: the cluster's registry, mirrors included.
    prefix = outputs[OURS["gateway"]].rpartition("/")[0]
    problems += [
        f"{key}: mirrored to {repo}, not under {prefix}/mirror/ (one registry for every environment)"
        for key, (repo, _) in images.items()
        if key not in OURS and not repo.startswith(f"{prefix}/mirror/")
    ]
    if problems:
        raise ReleaseError("\n".join(problems))

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(REPO / "k8s", out / "k8s", ignore=shutil.ignore_patterns("tests", "__pycache__", "*.py"))
    # The cluster's own values, from its Terraform outputs, written into the copy (never the checkout).
    # The tag images.yml published beside the digest (sha-<commit>), so the rendered reference reads
    # true; the digest is what the kubelet pulls.
    sha = os.environ.get("GITHUB_SHA", "")
    tag = os.environ.get("IMAGE_TAG") or (f"sha-{sha}" if sha else "")
    _run(
        ["bash", str(REPO / "k8s" / "scripts" / "aws-cluster-values.sh"), str(tf_dir)],
        env={
            **os.environ,
            **({"IMAGE_TAG": tag} if tag else {}),
            "OUT_DIR": str(out / "k8s" / "overlays" / overlay / "cluster"),
            # Karpenter mode also writes the platform's values (applied by k8s/bootstrap.sh): into the copy.
            "PLATFORM_OUT_DIR": str(out / "k8s" / "platform" / "aws-karpenter" / "cluster"),
            "GATEWAY_DIGEST": ours["gateway"][1],
            "ENGINE_DIGEST": ours["engine-gpu"][1],
        },
    )
    overlay_dir = out / "k8s" / "overlays" / overlay
    base = _run(["kubectl", "kustomize", str(overlay_dir)])

    entries = pin_entries(base, images, prefix)
    release_dir = out / "release"
    release_dir.mkdir()
    (release_dir / "kustomization.yaml").write_text(
        f"# Written by .github/scripts/release.py for {env} (compute_mode {mode}).\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - ../k8s/overlays/{overlay}\nimages:\n" + "".join(entries)
    )
    manifest = _run(["kubectl", "kustomize", str(release_dir)])
    check(manifest, images, prefix)
    target = out / "release.yaml"
    target.write_text(manifest)
    print(f"release for {env}: overlays/{overlay} (compute_mode {mode}) -> {target}")
    for ref in sorted(set(IMAGE_LINE.findall(manifest))):
        print(f"  image {ref}")
    return target


def check(manifest: str, images: dict[str, tuple[str, str]], prefix: str) -> None:
    refs = set(IMAGE_LINE.findall(manifest))
    problems = [f"not pinned to a digest: {ref}" for ref in sorted(refs) if not DIGEST.match(split_ref(ref)[2])]
    # No third-party registry: every image comes from the cluster's ECR (ours or a mirror).
    problems += [f"not from our registry {prefix}: {ref}" for ref in sorted(refs) if not ref.startswith(f"{prefix}/")]
    for key, (repo, digest) in images.items():
        found = {split_ref(ref)[2] for ref in refs if split_ref(ref)[0] == repo}
        if (found and found != {digest}) or (key in OURS and not found):
            problems.append(f"{key}: expected {repo}@{digest}, the release has {sorted(found) or 'none'}")
        elif not found:
            # Mirrored and scanned, but the manifests no longer run it: the lists drifted apart.
            print(f"::warning::{key} ({repo}) is mirrored but not in the release", file=sys.stderr)
    if EXAMPLE_ACCOUNT in manifest:
        problems.append(f"the example account {EXAMPLE_ACCOUNT} is still in the release")
    if problems:
        raise ReleaseError("\n".join(problems))


def _run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, timeout=300)
    except FileNotFoundError as exc:
        raise ReleaseError(f"{cmd[0]} is not on PATH") from exc
    if proc.returncode != 0:
        raise ReleaseError(f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n{proc.stderr.strip()}")
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", required=True, help="dev or prod: terraform/envs/<env>")
    p.add_argument("--images", required=True, help="images.yml's JSON (repo@digest per image)")
    p.add_argument("--out", type=Path, required=True, help="work directory; the release is <out>/release.yaml")
    p.add_argument("--terraform-dir", type=Path, help="default: terraform/envs/<env>")
    args = p.parse_args(argv)
    try:
        render(args.env, args.images, args.out, args.terraform_dir)
    except ReleaseError as exc:
        for line in str(exc).splitlines():
            print(f"::error::{line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
