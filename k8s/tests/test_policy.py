"""checkov on the rendered overlays: no finding outside k8s/checkov.yaml's commented skip list."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from .manifests import K8S, REPO, Obj

CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"


def test_checkov_findings_are_all_explained(
    rendered: dict[str, list[Obj]], platforms: dict[str, list[Obj]], tmp_path: Path
) -> None:
    """No finding outside the skip list, and no skip that no longer fires (overlays and platforms)."""
    assert CHECKOV.is_file(), "run scripts/install-checkov.sh"
    everything = {**rendered, **{f"platform-{mode}": objs for mode, objs in platforms.items()}}
    for name, objs in everything.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(objs))
    skips = set(yaml.safe_load((K8S / "checkov.yaml").read_text())["skip-check"])
    # Run without the skip list to see what the skips hide. BC_SKIP_MAPPING: no call home.
    cmd = [str(CHECKOV), "-d", str(tmp_path), "--framework", "kubernetes", "--quiet", "--compact", "-o", "json"]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=env)
    report = json.loads(proc.stdout)
    assert report["summary"]["parsing_errors"] == 0
    # Checkov counts each Deployment once more for its pod template: at least every object was read.
    assert report["summary"]["resource_count"] >= sum(len(objs) for objs in everything.values())
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    unexplained = sorted(f for f in failed if f[0] not in skips)
    assert not unexplained, f"checkov findings not in k8s/checkov.yaml: {unexplained}"
    stale = sorted(skips - {check for check, _ in failed})
    assert not stale, f"skips in k8s/checkov.yaml that no longer fire, remove them: {stale}"
