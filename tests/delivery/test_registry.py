"""The registry half of the pipeline (.github/scripts/registry.py) run for real against an `aws`
shim that keeps an ECR's tags in a file and enforces immutable tags: a re-run of a publish finds the
commit's image and skips the push; promotion to prod tags the digests dev ran (no pull, no build,
no push); re-running it is a no-op; a tag on another digest is refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ._shims import Shims
from ._tools import REPO, run

REGISTRY_PY = REPO / ".github" / "scripts" / "registry.py"
HOST = "210987654321.dkr.ecr.eu-west-1.amazonaws.com"
GATEWAY, ENGINE = f"{HOST}/inferstack/gateway", f"{HOST}/inferstack/engine"
D1, D2, D3 = ("sha256:" + c * 64 for c in "abc")
IMAGES = {"gateway": f"{GATEWAY}@{D1}", "engine-gpu": f"{ENGINE}@{D2}"}


def _registry(tmp_path: Path) -> Shims:
    ecr = {"inferstack/gateway": {"sha-1234": D1}, "inferstack/engine": {"sha-1234": D2, "prod-0000": D3}}
    return Shims(tmp_path, {"ecr": ecr}).add("aws", "docker", "crane", "skopeo")


def _call(shims: Shims, *args: str) -> tuple[int, str, str]:
    done = run([sys.executable, str(REGISTRY_PY), *args], env=shims.env())
    return done.returncode, done.stdout, done.stderr


def test_a_published_tag_is_found_and_a_new_one_is_not(tmp_path: Path) -> None:
    shims = _registry(tmp_path)
    assert _call(shims, "existing", f"{GATEWAY}:sha-1234")[:2] == (0, f"digest={D1}\n")
    assert _call(shims, "existing", f"{GATEWAY}:sha-5678")[:2] == (0, "digest=\n")
    [call] = shims.calls("aws")[-1:]
    assert call[:3] == ["aws", "ecr", "describe-images"] and "210987654321" in call and "eu-west-1" in call


def test_promotion_tags_the_same_digests_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    shims = _registry(tmp_path)
    code, out, err = _call(shims, "promote", "--images", json.dumps(IMAGES), "--tag", "prod-1234")
    assert code == 0, err
    assert json.loads(out) == IMAGES  # prod deploys exactly what dev ran
    ecr = shims.state["ecr"]
    assert ecr["inferstack/gateway"]["prod-1234"] == D1 and ecr["inferstack/engine"]["prod-1234"] == D2
    ops = [c[2] for c in shims.calls()]
    assert ops.count("put-image") == 2
    assert {c[0] for c in shims.calls()} == {"aws"}, "no pull, build or push: promotion is a tag"

    code, out, err = _call(shims, "promote", "--images", json.dumps(IMAGES), "--tag", "prod-1234")
    assert code == 0, err
    assert "nothing to do" in err
    assert [c[2] for c in shims.calls()].count("put-image") == 2, "a re-run must not write again"


def test_promotion_refuses_a_tag_held_by_another_digest(tmp_path: Path) -> None:
    shims = _registry(tmp_path)
    code, _, err = _call(
        shims, "promote", "--images", json.dumps({"engine-gpu": IMAGES["engine-gpu"]}), "--tag", "prod-0000"
    )
    assert code == 1 and "tags are immutable" in err
    assert shims.state["ecr"]["inferstack/engine"]["prod-0000"] == D3


def test_promotion_refuses_a_digest_the_registry_does_not_have(tmp_path: Path) -> None:
    shims = _registry(tmp_path)
    missing = {"gateway": f"{GATEWAY}@{D3}"}
    code, _, err = _call(shims, "promote", "--images", json.dumps(missing), "--tag", "prod-1234")
    assert code == 1 and "is not in the registry" in err
    assert "prod-1234" not in shims.state["ecr"]["inferstack/gateway"]


def test_promotion_refuses_a_tag_instead_of_a_digest(tmp_path: Path) -> None:
    shims = _registry(tmp_path)
    code, _, err = _call(shims, "promote", "--images", json.dumps({"gateway": f"{GATEWAY}:sha-1234"}), "--tag", "p")
    assert code == 1 and "not pinned to a digest" in err


def test_promotion_refuses_a_bad_tag(tmp_path: Path) -> None:
    shims = _registry(tmp_path)
    code, _, err = _call(shims, "promote", "--images", json.dumps(IMAGES), "--tag", "prod 1; rm")
    assert code == 1 and "not a valid tag" in err
    assert not shims.calls("aws")


def test_promotion_tags_the_mirrors_prod_runs_too(tmp_path: Path) -> None:
    """images.json carries the third-party mirrors (mirror.py's records): promotion tags their digests
    like ours, so the mirror's lifecycle rule counts the image prod runs as a recent one."""
    mirror = f"{HOST}/inferstack/mirror/docker.io/valkey/valkey"
    ecr = {"inferstack/mirror/docker.io/valkey/valkey": {f"8.1.4-alpine-{D3[7:19]}": D3}}
    shims = Shims(tmp_path, {"ecr": ecr}).add("aws")
    code, out, err = _call(shims, "promote", "--images", json.dumps({"valkey": f"{mirror}@{D3}"}), "--tag", "prod-1234")
    assert code == 0, err
    assert json.loads(out) == {"valkey": f"{mirror}@{D3}"}
    assert shims.state["ecr"]["inferstack/mirror/docker.io/valkey/valkey"]["prod-1234"] == D3
