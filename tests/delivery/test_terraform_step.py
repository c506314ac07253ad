"""terraform-env.sh, as deploy.yml (plan) and deploy-env.yml (apply) run it, with the environment the
workflows give it (their top-level env, parsed from the YAML) and a `terraform` shim that records
each call: the backend comes from TF_STATE_BUCKET, apply applies the saved plan, the job outputs are
written, and Terraform sees exactly the workflow's TF_VAR_*. (terraform/tests plans each environment
for real with these variables and the committed tfvars.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from ._shims import Shims
from ._tools import REPO, WORKFLOWS

SCRIPT = REPO / ".github" / "scripts" / "terraform-env.sh"


def _workflow_tf_vars(name: str) -> dict[str, str]:
    env = yaml.load((WORKFLOWS / name).read_text(), Loader=yaml.BaseLoader).get("env", {})
    values = {"${{ github.repository }}": "acme/inferstack", "${{ vars.TF_STATE_BUCKET }}": "acme-tfstate"}
    return {k: values[v] for k, v in env.items() if k.startswith("TF_VAR_")}


@pytest.mark.parametrize(("mode", "workflow"), [("plan", "deploy.yml"), ("apply", "deploy-env.yml")])
@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_terraform_step(mode: str, workflow: str, env_name: str, tmp_path: Path) -> None:
    tf_vars = _workflow_tf_vars(workflow)
    outputs = {"cluster_name": f"inferstack-{env_name}", "namespace": "inferstack"}
    shims = Shims(tmp_path / "shims", {"terraform_outputs": outputs}).add("terraform")
    github_output = tmp_path / "github_output"
    env = shims.env(TF_STATE_BUCKET="acme-tfstate", AWS_REGION="eu-west-1", GITHUB_OUTPUT=str(github_output), **tf_vars)
    done = subprocess.run(
        ["bash", str(SCRIPT), mode, env_name],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    calls = shims.calls("terraform")
    assert all(c[1] == f"-chdir={REPO / 'terraform' / 'envs' / env_name}" for c in calls)
    assert [c for c in calls[0] if c.startswith("-backend-config")] == [
        "-backend-config=bucket=acme-tfstate",
        "-backend-config=region=eu-west-1",
    ]
    assert "-out=tfplan" in calls[1], "one saved plan"
    assert all(seen == tf_vars for seen in shims.state["tf_vars"]), "Terraform sees exactly the workflow's TF_VAR_*"
    if mode == "apply":
        assert calls[2][2] == "apply" and calls[2][-1] == "tfplan", "apply applies the saved plan"
        assert github_output.read_text() == f"cluster=inferstack-{env_name}\nnamespace=inferstack\n"
    else:
        assert (tmp_path / f"plan-{env_name}.txt").read_text().startswith("Plan:")
