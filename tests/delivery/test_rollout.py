"""apply-release.sh then rollback.sh, as deploy-env.yml runs them on a failure, against a `kubectl`
shim that keeps Deployment revisions: only the Deployments the release changed go back, each to the
revision it had before; the first deploy has nothing to return to and says so."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ._shims import Shims
from ._tools import REPO

SCRIPTS = REPO / ".github" / "scripts"
RELEASE = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: inferstack-gateway, namespace: inferstack}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: vllm-engine, namespace: inferstack}
"""


def _script(shims: Shims, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = shims.env(CLUSTER="inferstack-dev", NAMESPACE="inferstack", AWS_REGION="eu-west-1", ENV_NAME="dev")
    return subprocess.run(["bash", *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_a_failed_rollout_returns_exactly_the_changed_deployments(tmp_path: Path) -> None:
    before = {"inferstack-gateway": 3, "vllm-engine": 5, "inferstack-redis": 2}
    shims = Shims(tmp_path / "shims", {"deployments": before, "unhealthy": ["inferstack-gateway"]})
    shims.add("kubectl", "aws")
    (tmp_path / "release.yaml").write_text(RELEASE)

    applied = _script(shims, tmp_path, str(SCRIPTS / "apply-release.sh"), "release.yaml")
    assert applied.returncode != 0, "an unhealthy rollout fails the step"
    assert shims.state["deployments"] == {"inferstack-gateway": 4, "vllm-engine": 6, "inferstack-redis": 2}

    rolled = _script(shims, tmp_path, str(SCRIPTS / "rollback.sh"), "revisions-before.txt")
    assert rolled.returncode == 0, rolled.stderr
    assert shims.state["undone"] == {"inferstack-gateway": 3, "vllm-engine": 5}, "redis was not changed"
    assert "rolled back" in rolled.stdout


def test_the_first_deploy_has_nothing_to_roll_back(tmp_path: Path) -> None:
    shims = Shims(tmp_path / "shims", {"deployments": {}, "unhealthy": ["vllm-engine"]}).add("kubectl", "aws")
    (tmp_path / "release.yaml").write_text(RELEASE)
    assert _script(shims, tmp_path, str(SCRIPTS / "apply-release.sh"), "release.yaml").returncode != 0
    rolled = _script(shims, tmp_path, str(SCRIPTS / "rollback.sh"), "revisions-before.txt")
    assert "undone" not in shims.state
    assert rolled.returncode == 0 and "nothing to return to" in rolled.stdout
