"""Offline checks of everything under terraform/: fmt, validate, `terraform test`, checkov, layout.

Terraform runs through terraform/scripts/tf.sh, which uses the provider mirror at /opt/tf-plugins
when it exists and the public registry otherwise. Every Terraform command runs in a copy of the
tree under pytest's tmp dir, so no `.terraform/` or lock file lands in the repository and the roots
can be initialised in parallel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

TF_DIR = Path(__file__).resolve().parents[1]
REPO = TF_DIR.parent
TF_SH = TF_DIR / "scripts" / "tf.sh"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"

MODULES = sorted(p.name for p in (TF_DIR / "modules").iterdir() if p.is_dir())
ENVS = sorted(p.name for p in (TF_DIR / "envs").iterdir() if p.is_dir())
# Every folder Terraform can run in on its own, relative to terraform/.
ROOTS = [f"modules/{m}" for m in MODULES] + ["bootstrap", "shared"] + [f"envs/{e}" for e in ENVS]
WORKFLOWS = REPO / ".github" / "workflows"
# Fake values for the GitHub expressions the workflows put in TF_VAR_* (the expression, not the name,
# decides: a new variable fed from a known context needs nothing here).
FAKE_EXPRESSIONS = {"${{ github.repository }}": "acme/inferstack"}

# Outputs that k8s/overlays/aws-gpu and the GitHub workflows read (names agreed with them).
CONSUMED_OUTPUTS = {
    "cluster_name",
    "cluster_endpoint",
    "update_kubeconfig_command",
    "compute_mode",
    "namespace",
    "karpenter_node_role_name",
    "karpenter_interruption_queue_name",
    "karpenter_discovery_tag",
    "ecr_gateway_url",
    "ecr_engine_url",
    "models_bucket_name",
    "engine_role_arn",
    "ci_plan_role_arn",
    "ci_apply_role_arn",
    "gpu_instance_types",
    "engine_resources",
    "karpenter_version",
    "lb_controller_role_arn",
    "acm_certificate_arn",
    "gateway_url",
    "redis_url",
}

TF_TIMEOUT = 300


def tf(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"}
    return subprocess.run(
        [str(TF_SH), *args, "-no-color"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TF_TIMEOUT,
        check=False,
    )


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"


@pytest.fixture(scope="session")
def tf_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of terraform/ with every root initialised (the committed lock files are verified)."""
    tree = tmp_path_factory.mktemp("tf") / "terraform"
    shutil.copytree(TF_DIR, tree, ignore=shutil.ignore_patterns(".terraform", "__pycache__"))

    def init(root: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        return root, tf(tree / root, "init", "-backend=false", "-input=false")

    # The first init fills the shared plugin cache; the rest only link to it and can run together.
    results = [init(ROOTS[0])]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results += list(pool.map(init, ROOTS[1:]))
    failed = {root: explain(proc) for root, proc in results if proc.returncode != 0}
    assert not failed, f"terraform init failed: {failed}"
    return tree


@pytest.fixture(scope="session")
def tf_runs(tf_tree: Path) -> dict[tuple[str, str], subprocess.CompletedProcess[str]]:
    """`validate -json` and `test` for every root, run concurrently in the initialised copy.

    Each command is mostly waiting on a provider process; running them side by side halves the
    suite's wall time on two cores. Tests below only read the results.
    """
    tree = tf_tree
    jobs = [(root, cmd) for root in ROOTS for cmd in ("validate", "test")]

    def run(job: tuple[str, str]) -> subprocess.CompletedProcess[str]:
        root, cmd = job
        return tf(tree / root, *(["validate", "-json"] if cmd == "validate" else ["test"]))

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip(jobs, pool.map(run, jobs), strict=True))


def test_fmt() -> None:
    proc = tf(TF_DIR, "fmt", "-check", "-recursive", "-diff")
    assert proc.returncode == 0, "run `terraform/scripts/tf.sh fmt -recursive terraform`\n" + explain(proc)


@pytest.mark.parametrize("root", ROOTS)
def test_validate(tf_runs: dict[tuple[str, str], subprocess.CompletedProcess[str]], root: str) -> None:
    proc = tf_runs[root, "validate"]
    assert proc.stdout.lstrip().startswith("{"), explain(proc)
    report = json.loads(proc.stdout)
    # Warnings count too: they are tomorrow's errors (deprecated arguments, provider renames).
    assert report["valid"] and report["diagnostics"] == [], json.dumps(report["diagnostics"], indent=2)


@pytest.mark.parametrize("root", ROOTS)
def test_terraform_test(tf_runs: dict[tuple[str, str], subprocess.CompletedProcess[str]], root: str) -> None:
    assert list((TF_DIR / root / "tests").glob("*.tftest.hcl")), f"{root} has no tests/*.tftest.hcl"
    proc = tf_runs[root, "test"]
    assert proc.returncode == 0, explain(proc)
    summary = re.search(r"(\d+) passed, (\d+) failed", proc.stdout)
    assert summary and int(summary[1]) > 0 and summary[2] == "0", explain(proc)


@pytest.mark.parametrize("root", ROOTS)
def test_layout(root: str) -> None:
    """Each folder follows the same layout, so a reader knows where to look."""
    folder = TF_DIR / root
    for name in ("versions.tf", "variables.tf", "outputs.tf", "README.md" if root.startswith("modules") else "main.tf"):
        assert (folder / name).is_file(), f"{root}/{name} is missing"
    assert (folder / "versions.tf").read_text().count('version = "~> 5.100"') == 1


@pytest.mark.parametrize("root", ROOTS)
def test_variables_are_typed_and_described(root: str) -> None:
    blocks = re.split(r'^variable "', (TF_DIR / root / "variables.tf").read_text(), flags=re.M)[1:]
    assert blocks, f"{root}/variables.tf declares no variables"
    for block in blocks:
        name = block.split('"', 1)[0]
        assert re.search(r"^\s+description\s+=", block, re.M), f"{root}: variable {name} has no description"
        assert re.search(r"^\s+type\s+=", block, re.M), f"{root}: variable {name} has no type"


def test_environments_export_what_the_overlay_consumes() -> None:
    outputs = {env: (TF_DIR / "envs" / env / "outputs.tf").read_text() for env in ENVS}
    # One contract for every environment: dev and prod must not drift apart.
    assert len(set(outputs.values())) == 1, "envs/*/outputs.tf differ"
    declared = set(re.findall(r'^output "([^"]+)"', next(iter(outputs.values())), re.M))
    assert declared >= CONSUMED_OUTPUTS, f"missing outputs: {sorted(CONSUMED_OUTPUTS - declared)}"


def test_environments_use_the_s3_native_lock_file() -> None:
    for env in ENVS:
        versions = (TF_DIR / "envs" / env / "versions.tf").read_text()
        assert re.search(r'backend "s3"', versions) and re.search(r"use_lockfile\s*=\s*true", versions), env
        assert f'key          = "envs/{env}/terraform.tfstate"' in versions, f"{env} state key"


def test_checkov_findings_are_all_explained() -> None:
    """No finding outside the commented skip list, and no skip that no longer fires."""
    assert CHECKOV.is_file(), "run scripts/install-checkov.sh"
    config = yaml.safe_load((TF_DIR / "checkov.yaml").read_text())
    skips = set(config["skip-check"])
    # Run without the skip list to see what the skips actually hide.
    cmd = [str(CHECKOV), "-d", str(TF_DIR), "--framework", "terraform", "--quiet", "--compact", "-o", "json"]
    for path in config["skip-path"]:
        cmd += ["--skip-path", path]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(proc.stdout)
    assert report["summary"]["parsing_errors"] == 0, report["results"].get("parsing_errors")
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    unexplained = sorted(f for f in failed if f[0] not in skips)
    assert not unexplained, f"checkov findings not in terraform/checkov.yaml: {unexplained}"
    stale = sorted(skips - {check for check, _ in failed})
    assert not stale, f"skips in terraform/checkov.yaml that no longer fire, remove them: {stale}"


class TestProviderSource:
    """tf.sh picks the filesystem mirror when present and the registry otherwise, with no edits."""

    def run(self, tmp_path: Path, **env: str) -> str:
        base = {k: v for k, v in os.environ.items() if k not in ("TF_CLI_CONFIG_FILE", "TF_PLUGIN_CACHE_DIR")}
        proc = subprocess.run(
            [str(TF_SH), "version"],
            env={**base, "XDG_CACHE_HOME": str(tmp_path / "cache"), **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, explain(proc)
        return (tmp_path / "cache" / "inferstack" / "terraformrc").read_text()

    def test_uses_mirror_when_present(self, tmp_path: Path) -> None:
        mirror = tmp_path / "mirror"
        (mirror / "registry.terraform.io" / "hashicorp" / "aws").mkdir(parents=True)
        rc = self.run(tmp_path, TF_PROVIDER_MIRROR=str(mirror), TF_CLI_CONFIG_FILE=str(tmp_path / "absent"))
        assert f'path    = "{mirror}"' in rc and "filesystem_mirror" in rc
        assert "plugin_cache_dir" in rc

    def test_uses_registry_without_mirror(self, tmp_path: Path) -> None:
        rc = self.run(tmp_path, TF_PROVIDER_MIRROR=str(tmp_path / "no-mirror"))
        assert "filesystem_mirror" not in rc and "direct {}" in rc

    def test_respects_an_existing_cli_config(self, tmp_path: Path) -> None:
        own = tmp_path / "own.tfrc"
        own.write_text("disable_checkpoint = true\n")
        base = {k: v for k, v in os.environ.items() if k != "TF_CLI_CONFIG_FILE"}
        proc = subprocess.run(
            [str(TF_SH), "version"],
            env={**base, "XDG_CACHE_HOME": str(tmp_path / "cache"), "TF_CLI_CONFIG_FILE": str(own)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, explain(proc)
        assert not (tmp_path / "cache" / "inferstack" / "terraformrc").exists(), "a user's own config must win"


def workflow_tf_vars() -> dict[str, str]:
    """Every TF_VAR_* the workflows set (workflow, job and step `env:`), with its expression."""
    found: dict[str, str] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "env" and isinstance(value, dict):
                    found.update({k: str(v) for k, v in value.items() if k.startswith("TF_VAR_")})
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in sorted(WORKFLOWS.glob("*.yml")):
        walk(yaml.safe_load(path.read_text()))
    return found


def tfvars_names(env: str) -> set[str]:
    text = (TF_DIR / "envs" / env / "terraform.tfvars").read_text()
    return set(re.findall(r"^([a-z_][a-z0-9_]*)\s*=", text, re.M))


@pytest.mark.parametrize("env", ENVS)
def test_pipeline_plan(tf_tree: Path, env: str) -> None:
    """`plan` with exactly the workflows' TF_VAR_* plus the committed terraform.tfvars succeeds.

    Before the tfvars existed, dev failed ("Set state_bucket_name when github_repository is set")
    and prod asked for public_access_cidrs.
    """
    tf_vars = workflow_tf_vars()
    assert tf_vars, "the workflows set no TF_VAR_*: this test reads .github/workflows/*.yml"
    unknown = {k: v for k, v in tf_vars.items() if v not in FAKE_EXPRESSIONS}
    assert not unknown, f"add a fake value for these workflow expressions to FAKE_EXPRESSIONS: {unknown}"
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith("TF_VAR_")}
    env_vars |= {k: FAKE_EXPRESSIONS[v] for k, v in tf_vars.items()}
    env_vars |= {"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"}
    proc = subprocess.run(
        [str(TF_SH), "test", "-test-directory=pipeline", "-no-color"],
        cwd=tf_tree / "envs" / env,
        env=env_vars,
        capture_output=True,
        text=True,
        timeout=TF_TIMEOUT,
        check=False,
    )
    print(f"{env}: workflow variables {sorted(tf_vars)} + terraform.tfvars {sorted(tfvars_names(env))}")
    assert proc.returncode == 0 and "1 passed, 0 failed" in proc.stdout, explain(proc)


@pytest.mark.parametrize("env", ENVS)
def test_tfvars_do_not_shadow_the_workflows(env: str) -> None:
    """terraform.tfvars beats TF_VAR_*: a name in both would silently ignore the workflow's value."""
    from_workflows = {k.removeprefix("TF_VAR_") for k in workflow_tf_vars()}
    assert not tfvars_names(env) & from_workflows, f"{env}/terraform.tfvars sets what the workflows set"


def test_pinned_kubernetes_version_is_in_standard_support() -> None:
    """Fails 60 days before the pinned version leaves EKS standard support (terraform/eks-support-calendar.csv)."""
    script = TF_DIR / "scripts" / "eks_support.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30, check=False)
    print(proc.stdout)
    assert proc.returncode == 0, explain(proc)
    # The check itself: 1.33 (the version pinned before) would have failed on 2026-12-02.
    late = subprocess.run(
        [sys.executable, str(script), "--today", "2027-03-01"], capture_output=True, text=True, timeout=30, check=False
    )
    assert late.returncode == 1 and "leaves EKS standard support on 2027-03-27" in late.stderr, explain(late)


@pytest.mark.parametrize("root", ROOTS)
def test_lock_file_is_committed(root: str) -> None:
    """Every apply uses the same provider build: each root commits its lock file (not git-ignored)."""
    lock = TF_DIR / root / ".terraform.lock.hcl"
    assert lock.is_file(), f"run `terraform providers lock` in terraform/{root} and commit the file"
    assert re.search(r'provider "registry.terraform.io/hashicorp/aws" \{\s*version\s*=\s*"5\.100\.0"', lock.read_text())
    ignored = subprocess.run(["git", "check-ignore", "-q", str(lock)], cwd=REPO, check=False, timeout=30)
    assert ignored.returncode == 1, f"{lock} is git-ignored"
