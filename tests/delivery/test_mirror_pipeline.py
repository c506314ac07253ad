"""The third-party publish as images.yml writes it, step by step, then the deploy's signature check and
render: the `run:` blocks of images.yml's jobs are executed in their order with bash, as a runner
would (a step's `if:` decides, a failed step stops the job), against two real registries on loopback
(the real skopeo, a two-platform OCI index upstream: _registries.py), and the records they write go
through record's merge into images.json, verify-signatures.sh and release.py.

What is NOT real here, and why: `trivy` and `cosign` are stand-ins (no Trivy database and no Sigstore
are reachable: cosign is not packaged for Debian, and sigstore-python / sigstore-js sign files or
attach bundles, not cosign's image signatures, and need Fulcio and Rekor). The trivy stand-in reads
the manifest it is asked to scan from the upstream registry by digest and fails for a chosen
architecture; the cosign stand-in signs only a manifest the ECR registry holds, stamping the identity
Fulcio gives a job of images.yml run from main (`https://github.com/<repo>/.github/workflows/images.yml
@refs/heads/main`), and `verify` passes only for that identity and GitHub's issuer at that exact
repository and digest. So what is tested is the contract: scan -> copy -> sign the same digest ->
record; the reference signed is the one images.json carries and release.py deploys; the identity
deploy-env.yml verifies is the workflow that signs. Actions (`uses:`) do not run. That a real cosign
accepts these flags and a real Fulcio issues that identity is for the first publish on GitHub."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ._registries import ACCEPT, ECR_HOST, manifest, push_upstream, tool_env
from ._tools import REPO, WORKFLOWS
from .test_release import _release

PREFIX = f"{ECR_HOST}/inferstack"
GITHUB = "https://github.com"
REPOSITORY = "acme/inferstack"
ISSUER = "https://token.actions.githubusercontent.com"
# The identity in the certificate Fulcio issues to a job of images.yml called by deploy.yml on main:
# the called workflow's job_workflow_ref (deploy.yml runs on pushes to main: checked below).
SIGNING_IDENTITY = f"{GITHUB}/{REPOSITORY}/.github/workflows/images.yml@refs/heads/main"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")

TRIVY = '''#!{python}
"""trivy stand-in: scans only a single-platform manifest the upstream registry holds by digest."""
import json, os, sys, urllib.request
args = sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(json.dumps(args) + "\\n")
name, _, digest = args[-1].partition("@")
assert args[args.index("--image-src") + 1] == "remote", "the registry's bytes, not the daemon's"
accept = "application/vnd.oci.image.manifest.v1+json"
req = urllib.request.Request(f"http://{upstream}/v2/{{name}}/manifests/{{digest}}", headers={{"Accept": accept}})
manifest = json.load(urllib.request.urlopen(req, timeout=10))
assert "config" in manifest, "not a platform image: " + args[-1]
config = json.load(urllib.request.urlopen(f"http://{upstream}/v2/{{name}}/blobs/{{manifest['config']['digest']}}"))
if "--output" in args:
    with open(args[args.index("--output") + 1], "w") as f:
        json.dump({{"spdxVersion": "SPDX-2.3", "name": args[-1], "arch": config["architecture"]}}, f)
    sys.exit(0)
assert os.path.isfile(args[args.index("--ignorefile") + 1])
if config["architecture"] in os.environ.get("FAIL_ARCH", "").split(","):
    print(f"{{args[-1]}} ({{config['architecture']}}): CRITICAL: 1 (fixable)")
    sys.exit(1)
'''

COSIGN = '''#!{python}
"""cosign stand-in: a signature store keyed by <repository>@<digest>, as cosign keys it."""
import json, os, sys, urllib.error, urllib.request
args = sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(json.dumps(args) + "\\n")
store_file = {store!r}
store = json.load(open(store_file)) if os.path.exists(store_file) else {{"signatures": {{}}, "attestations": []}}
ref = args[-1]
repo, _, digest = ref.partition("@")
repo = repo.rsplit(":", 1)[0] if ":" in repo.rsplit("/", 1)[-1] else repo  # a tag beside the digest
if not digest.startswith("sha256:"):
    sys.exit(f"cosign stand-in: {{ref}} is not by digest")
key = repo + "@" + digest
if args[0] in ("sign", "attest"):
    host, _, path = repo.partition("/")
    assert host == {ecr_host!r}, ref
    req = urllib.request.Request(f"http://{ecr}/v2/{{path}}/manifests/{{digest}}", method="HEAD",
                                 headers={{"Accept": {accept!r}}})
    try:
        urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError:
        sys.exit(f"Error: signing {{ref}}: MANIFEST_UNKNOWN")
    signer = {{"identity": os.environ["FULCIO_IDENTITY"], "issuer": {issuer!r}}}
    if args[0] == "sign":
        store["signatures"][key] = signer
    else:
        predicate = args[args.index("--predicate") + 1]
        store["attestations"].append({{"ref": key, "type": args[args.index("--type") + 1],
                                      "predicate": json.load(open(predicate)), **signer}})
elif args[0] == "verify":
    want = {{"identity": args[args.index("--certificate-identity") + 1],
             "issuer": args[args.index("--certificate-oidc-issuer") + 1]}}
    if store["signatures"].get(key) != want:
        sys.exit(f"Error: no matching signatures: {{key}} is signed by {{store['signatures'].get(key)}}")
    print(json.dumps([{{"critical": {{"image": {{"docker-manifest-digest": digest}}}}}}]))
else:
    sys.exit(f"cosign stand-in: unsupported {{args}}")
json.dump(store, open(store_file, "w"))
'''


def _workflow(name: str) -> dict[str, Any]:
    return yaml.load((WORKFLOWS / name).read_text(), Loader=yaml.BaseLoader)  # type: ignore[no-any-return]


class Runner:
    """Runs a job's `run:` steps as GitHub's runner does (bash -e, the step's env over the job's, the
    expressions a step names filled from `context`, GITHUB_OUTPUT read back); skips `uses:` steps."""

    def __init__(self, tmp_path: Path, env: dict[str, str], context: dict[str, str]) -> None:
        self.workspace = tmp_path / "workspace"
        self.workspace.mkdir(exist_ok=True)
        for part in (".github", "docker"):  # the checkout: what the steps read
            if not (self.workspace / part).exists():
                (self.workspace / part).symlink_to(REPO / part)
        self.env, self.context = env, dict(context)
        self.ran: list[str] = []
        self.sequence: list[str] = []  # every step taken, in order (an action by its name and artifact)
        self.failed: str | None = None  # the step that failed: the job stopped there
        self.stderr = ""

    def expand(self, text: str) -> str:
        def value(m: re.Match[str]) -> str:
            assert m[1] in self.context, f"the workflow uses {m[0]}: give the test its value"
            return self.context[m[1]]

        return EXPRESSION.sub(value, text)

    def job(self, job: dict[str, Any], only: set[str] | None = None) -> str | None:
        """Every step in order (or those named in `only`); returns the step that failed, or None."""
        job_env = {k: self.expand(v) for k, v in job.get("env", {}).items()}
        for i, step in enumerate(job["steps"]):
            name = step.get("name", step.get("uses", str(i)))
            if only is not None and name not in only:
                continue
            if "if" in step:
                assert step["if"] == "env.PUBLISH_THIS == 'true'", f"no rule for if: {step['if']}"
                if job_env["PUBLISH_THIS"] != "true":
                    continue
            if "uses" in step:
                action = step["uses"].split("@")[0]
                artifact = step.get("with", {}).get("name")
                self.sequence.append(f"{action}:{artifact}" if artifact else action)
                continue
            output = self.workspace / f"output-{i}"
            output.write_text("")
            env = {**self.env, **job_env, **{k: self.expand(v) for k, v in step.get("env", {}).items()}}
            env |= {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(self.workspace / "summary.md")}
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", "-e", "-c", self.expand(step["run"])],
                cwd=self.workspace, env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            self.ran.append(name)
            self.sequence.append(name)
            if "id" in step:
                for line in output.read_text().splitlines():
                    key, _, val = line.partition("=")
                    self.context[f"steps.{step['id']}.outputs.{key}"] = val
            if done.returncode != 0:
                self.failed, self.stderr = str(name), done.stderr
                return self.failed
        return None


def _tools(tmp_path: Path, upstream: str, ecr: str) -> tuple[dict[str, str], Path]:
    """PATH with skopeo (the real one behind the host mapping), aws, trivy and cosign stand-ins; and
    the cosign stand-in's signature store."""
    env, _ = tool_env(tmp_path, upstream, ecr)
    bin_dir, store = tmp_path / "bin", tmp_path / "cosign-store.json"
    values = {"python": sys.executable, "upstream": upstream, "ecr": ecr, "ecr_host": ECR_HOST}
    (bin_dir / "trivy").write_text(TRIVY.format(log=str(tmp_path / "trivy.jsonl"), **values))
    (bin_dir / "cosign").write_text(
        COSIGN.format(log=str(tmp_path / "cosign.jsonl"), store=str(store), issuer=ISSUER, accept=ACCEPT, **values)
    )
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    # The steps' `python3`: this interpreter (pyenv's shim would put its own bin/, with a real aws, first).
    (bin_dir / "python3").symlink_to(sys.executable)
    return {**env, "FULCIO_IDENTITY": SIGNING_IDENTITY}, store


def _calls(tmp_path: Path, tool: str) -> list[list[str]]:
    log = tmp_path / f"{tool}.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _images_yml_runner(tmp_path: Path, env: dict[str, str], context: dict[str, str]) -> Runner:
    """A runner with images.yml's top-level env (REPOSITORY_PREFIX from the repository variable)."""
    runner = Runner(tmp_path, env, {**context, "vars.ECR_REPOSITORY_PREFIX || 'registry.invalid/inferstack'": PREFIX})
    runner.env = {**env, **{k: runner.expand(v) for k, v in _workflow("images.yml")["env"].items()}}
    return runner


def _third_party(tmp_path: Path, env: dict[str, str], publish: bool, name: str, source: str) -> Runner:
    context = {"matrix.name": name, "matrix.source": source, "inputs.publish == true": str(publish).lower()}
    runner = _images_yml_runner(tmp_path, env, context)
    runner.job(_workflow("images.yml")["jobs"]["third-party"])
    return runner


def _ours(tmp_path: Path, env: dict[str, str], ecr: str) -> None:
    """Our two images as the build job publishes them: pushed (here: the OCI index copied into the ECR
    registry), then its "Sign and attest" and "Record tag and digest" steps run as written."""
    build = _workflow("images.yml")["jobs"]["build"]
    for image, repository in (("gateway", "gateway"), ("engine-gpu", "engine")):
        digest = push_upstream(tmp_path / image, ecr, f"{image} build\n", repo=f"inferstack/{repository}")
        runner = _images_yml_runner(tmp_path, env, {
            "matrix.image": image, "matrix.repository": repository,
            "inputs.publish == true && matrix.repository != ''": "true",
            "steps.existing.outputs.digest || steps.push.outputs.digest": digest, "github.sha": "0" * 40,
        })  # fmt: skip
        (runner.workspace / f"sbom-{image}.spdx.json").write_text('{"spdxVersion": "SPDX-2.3"}')
        steps = {"Sign and attest (keyless, GitHub OIDC identity)", "Record tag and digest"}
        assert runner.job(build, only=steps) is None, runner.stderr
        assert set(runner.ran) == steps


def _merge(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """record's "Merge into images.json" over the records the jobs wrote (its artifact download)."""
    runner = Runner(tmp_path, env, {})
    assert runner.job(_workflow("images.yml")["jobs"]["record"]) is None, runner.stderr
    return dict(json.loads(runner.context["steps.merge.outputs.images"]))


def _verify(tmp_path: Path, env: dict[str, str], images: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """deploy-env.yml's "Verify image signatures" step with that job's SIGNER."""
    deploy = _workflow("deploy-env.yml")["jobs"]["deploy"]
    [step] = [s for s in deploy["steps"] if s.get("name") == "Verify image signatures"]
    context = {"github.server_url": GITHUB, "github.repository": REPOSITORY, "inputs.images": json.dumps(images)}
    runner = Runner(tmp_path, env, context)
    step_env = {k: runner.expand(v) for k, v in deploy["env"].items() if k in ("IMAGES", "SIGNER")}
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", "-c", step["run"]],
        cwd=runner.workspace, env={**env, **step_env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_signing_identity_is_images_yml_on_main() -> None:
    """SIGNING_IDENTITY is what Fulcio writes for the job that signs: the workflow file holding the
    sign steps (a reusable workflow's certificate names the called file) at the ref deploy.yml runs on.
    deploy-env.yml's SIGNER must be exactly that, for our images and the mirrors alike."""
    signing = {
        path.name
        for path in WORKFLOWS.glob("*.yml")
        for job in _workflow(path.name)["jobs"].values()
        for step in job.get("steps", [])
        if re.search(r"cosign (sign|attest)|mirror\.py sign", step.get("run", ""))
    }
    assert signing == {"images.yml"}
    deploy = _workflow("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    assert deploy["jobs"]["images"]["uses"] == "./.github/workflows/images.yml"
    signer = _workflow("deploy-env.yml")["jobs"]["deploy"]["env"]["SIGNER"]
    assert signer == "${{ github.server_url }}/${{ github.repository }}/.github/workflows/images.yml@refs/heads/main"
    script = (REPO / ".github" / "scripts" / "verify-signatures.sh").read_text()
    assert f"ISSUER={ISSUER}\n" in script and '--certificate-identity "$SIGNER"' in script


def test_publish_scans_every_platform_then_copies_signs_and_records_that_digest(
    tmp_path: Path, upstream: str, ecr: str
) -> None:
    scanned = push_upstream(tmp_path, upstream, "valkey build\n")
    index = manifest(upstream, "valkey/valkey", scanned)
    assert index is not None
    platforms = {e["digest"]: e["platform"]["architecture"] for e in json.loads(index[1])["manifests"]}
    env, store = _tools(tmp_path, upstream, ecr)

    runner = _third_party(tmp_path, env, True, "valkey", "valkey/valkey:8.1.4-alpine")
    assert runner.failed is None, runner.stderr
    # The order a publish runs in: resolve -> scan (every platform) -> copy -> sign -> record.
    assert runner.ran == [
        "Resolve the tag to a digest (once; the scan and the copy use this digest)",
        "Vulnerability scan of every platform (fails on fixable CRITICAL findings)",
        "Copy the scanned digest into the mirror (a re-run finds it and copies nothing)",
        "Sign the mirror's digest and attest its SBOMs (keyless, GitHub OIDC identity)",
    ]
    # The record (what images.json is merged from) is uploaded last, after the signature.
    assert runner.sequence[-3:] == [
        "sigstore/cosign-installer",
        "Sign the mirror's digest and attest its SBOMs (keyless, GitHub OIDC identity)",
        "actions/upload-artifact:record-${{ matrix.name }}",
    ]
    assert runner.sequence.index("aquasecurity/setup-trivy") < runner.sequence.index(runner.ran[1])
    # Trivy ran the gate and the SBOM on each platform image, by its digest from the resolved index.
    trivy = _calls(tmp_path, "trivy")
    assert sorted(c[-1] for c in trivy) == sorted(f"valkey/valkey@{d}" for d in platforms for _ in "gs")
    gates = [c for c in trivy if "--exit-code" in c and c[c.index("--exit-code") + 1] == "1"]
    assert {c[-1].partition("@")[2] for c in gates} == set(platforms)
    assert all(c[c.index("--ignorefile") + 1] == "docker/trivyignore.yaml" for c in gates)

    record = json.loads((runner.workspace / "record" / "valkey.json").read_text())
    mirror_ref = f"{record['repository']}@{record['digest']}"
    assert record["digest"] == scanned and record["repository"] == f"{PREFIX}/mirror/docker.io/valkey/valkey"
    # Signed: exactly the record's reference, once, after the copy put it in the registry.
    signs = [c for c in _calls(tmp_path, "cosign") if c[0] == "sign"]
    [ours_step] = [s for s in _workflow("images.yml")["jobs"]["build"]["steps"] if "cosign sign" in s.get("run", "")]
    ours_form = re.search(r"cosign (sign [^\n]*)\"\$ref\"", ours_step["run"])
    assert ours_form and signs == [[*ours_form[1].split(), mirror_ref]], signs  # the same command as ours
    state = json.loads(store.read_text())
    assert state["signatures"] == {mirror_ref: {"identity": SIGNING_IDENTITY, "issuer": ISSUER}}
    # Each platform's SBOM attested to that platform's manifest in the mirror.
    assert {(a["ref"], a["predicate"]["arch"]) for a in state["attestations"]} == {
        (f"{record['repository']}@{d}", arch) for d, arch in platforms.items()
    }

    # The adapter-sync job too, then ours, then record's merge: images.json.
    push_upstream(tmp_path / "aws-cli", upstream, "aws-cli build\n", "public.ecr.aws/aws-cli/aws-cli", "2.22.0")
    aws_cli = _third_party(tmp_path, env, True, "adapter-sync", "public.ecr.aws/aws-cli/aws-cli:2.22.0")
    assert aws_cli.failed is None, aws_cli.stderr
    _ours(tmp_path, env, ecr)
    images = _merge(tmp_path, env)  # the same workspace: record/ holds what the jobs wrote
    assert images["valkey"] == mirror_ref
    assert set(images) == {"gateway", "engine-gpu", "valkey", "adapter-sync"}

    # The deploy: every image of images.json verified with deploy-env.yml's identity and issuer...
    verified = _verify(tmp_path, env, images)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    checked = {c[-1] for c in _calls(tmp_path, "cosign") if c[0] == "verify"}
    assert checked == set(images.values())
    # ... and what release.py deploys is exactly what was verified: each image's repository and digest.
    code, output, _ = _release(tmp_path / "release", "dev", json.dumps(images))
    assert code == 0, output
    deployed = set(
        re.findall(
            r"^\s*(?:-\s+)?image:\s*(\S+)", (tmp_path / "release" / "release" / "release.yaml").read_text(), re.M
        )
    )
    assert {re.sub(r":[^/@]+@", "@", ref) for ref in deployed} == checked


def test_an_unsigned_mirror_or_another_signer_stops_the_deploy(tmp_path: Path, upstream: str, ecr: str) -> None:
    """verify-signatures.sh checks the mirrors as it checks ours: a mirror nobody signed, or one signed
    by images.yml from another branch, fails the step (the old script checked gateway and engine-gpu only)."""
    push_upstream(tmp_path, upstream, "valkey build\n")
    env, store = _tools(tmp_path, upstream, ecr)
    runner = _third_party(tmp_path, {**env, "FULCIO_IDENTITY": SIGNING_IDENTITY.replace("main", "feature")}, True,
                          "valkey", "valkey/valkey:8.1.4-alpine")  # fmt: skip
    assert runner.failed is None, runner.stderr
    _ours(tmp_path, env, ecr)
    record = json.loads((runner.workspace / "record" / "valkey.json").read_text())
    images = {json.loads(p.read_text())["image"]: "{repository}@{digest}".format(**json.loads(p.read_text()))
              for p in (runner.workspace / "record").glob("*.json")}  # fmt: skip
    assert images["valkey"] == f"{record['repository']}@{record['digest']}"
    done = _verify(tmp_path, env, images)
    assert done.returncode != 0 and "no matching signatures" in done.stderr, done.stdout + done.stderr
    state = json.loads(store.read_text())
    del state["signatures"][images["valkey"]]
    store.write_text(json.dumps(state))
    done = _verify(tmp_path, env, images)
    assert done.returncode != 0 and images["valkey"] in done.stderr


def test_a_failing_platform_stops_the_publish(tmp_path: Path, upstream: str, ecr: str) -> None:
    """arm64 has a fixable CRITICAL finding: amd64 passed, but the job stops at the scan, after
    scanning every platform: nothing is copied, signed or recorded, so record (needs: third-party)
    does not run and nothing is published."""
    scanned = push_upstream(tmp_path, upstream, "valkey build\n")
    env, store = _tools(tmp_path, upstream, ecr)
    runner = _third_party(tmp_path, {**env, "FAIL_ARCH": "arm64"}, True, "valkey", "valkey/valkey:8.1.4-alpine")
    assert runner.failed == "Vulnerability scan of every platform (fails on fixable CRITICAL findings)"
    assert "linux/arm64" in runner.stderr and "scan failed" in runner.stderr
    gated = {c[-1] for c in _calls(tmp_path, "trivy") if "--ignorefile" in c}
    assert len(gated) == 2, "every platform is scanned, not only up to the first failure"
    assert manifest(ecr, "inferstack/mirror/docker.io/valkey/valkey", scanned) is None
    assert not _calls(tmp_path, "cosign") and not store.exists()
    assert not (runner.workspace / "record").exists()
    needs = _workflow("images.yml")["jobs"]["record"]["needs"]
    assert "third-party" in needs


def test_a_pull_request_scans_every_platform_and_publishes_nothing(tmp_path: Path, upstream: str, ecr: str) -> None:
    push_upstream(tmp_path, upstream, "valkey build\n")
    env, _ = _tools(tmp_path, upstream, ecr)
    runner = _third_party(tmp_path, env, False, "valkey", "valkey/valkey:8.1.4-alpine")
    assert runner.failed is None, runner.stderr
    assert len({c[-1] for c in _calls(tmp_path, "trivy")}) == 2
    assert not _calls(tmp_path, "cosign")
    assert [json.loads(line)[0] for line in (tmp_path / "skopeo.jsonl").read_text().splitlines()] == [
        "inspect",
        "inspect",
    ], "resolve, then the scan's read of the index by digest: no copy"
