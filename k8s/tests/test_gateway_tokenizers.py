"""The gateway's own tokenizers in the aws overlays: the files the init container copies, where the
gateway looks for them, from which bucket, with which IAM grant. Contracts between the fleet generator,
the gateway's settings (kvcache/settings.py through config.py), the cluster values script and
Terraform; fleet/tests/test_tokenizer_sync.py runs the init container itself against moto's S3."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from inferstack.config import Settings
from inferstack_fleet import catalog as fleet_catalog
from inferstack_fleet import manifests

from .manifests import GPU_OVERLAYS, K8S, REPO, Obj, engines, env, find, one, render, vllm
from .shims import Shims

DIRS = "INFERSTACK_KV_EVENTS__LOCAL_TOKENIZER__DIRS"


@pytest.fixture(scope="module")
def generating() -> dict[str, fleet_catalog.Model]:
    return {m.name: m for m in fleet_catalog.load(REPO / "fleet").models if m.task == "generate"}


def _config(objs: list[Obj]) -> dict[str, str]:
    (cm,) = [c for c in find(objs, "ConfigMap") if c["metadata"]["name"].startswith("inferstack-gateway")]
    return dict(cm["data"])


def _gateway(objs: list[Obj]) -> Obj:
    return dict(one(objs, "Deployment", "inferstack-gateway")["spec"]["template"]["spec"])


def _sync(pod: Obj) -> Obj:
    (init,) = [c for c in pod.get("initContainers", []) if c["name"] == "tokenizer-sync"]
    return dict(init)


def _sources(container: Obj) -> dict[str, str]:
    lines = env(container)["TOKENIZER_SOURCES"].splitlines()
    return dict(line.split(" ", 1) for line in lines if line.strip())


def _bucket(uri: str) -> str:
    return uri.removeprefix("s3://").partition("/")[0]


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_the_gateway_reads_each_generating_models_tokenizer_where_the_init_container_writes_it(
    rendered: dict[str, list[Obj]],
    overlay: str,
    generating: dict[str, fleet_catalog.Model],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The setting's name is the gateway's (its own Settings parse the ConfigMap's value into
    kv_events.local_tokenizer.dirs); every directory is below the gateway's read-only mount of the
    emptyDir the init container writes at TOKENIZER_DIR; models are the catalog's generating ones, each
    from its own weights URI."""
    objs = rendered[overlay]
    config, pod = _config(objs), _gateway(objs)
    monkeypatch.setenv(DIRS, config[DIRS])
    dirs = Settings(upstreams=[]).kv_events.local_tokenizer.dirs
    assert dirs == json.loads(config[DIRS]) and set(dirs) == set(generating)

    (gateway,) = pod["containers"]
    sync = _sync(pod)
    target = env(sync)["TOKENIZER_DIR"]
    written = next(m["name"] for m in sync["volumeMounts"] if m["mountPath"] == target)
    read = [m for m in gateway["volumeMounts"] if m["name"] == written]
    assert read == [{"name": written, "mountPath": target, "readOnly": True}]
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == written)
    assert dirs == {name: f"{target}/{name}" for name in generating}

    bucket = env(sync)["MODELS_BUCKET"]
    uris = {name: f"s3://{bucket}/{key}" for name, key in _sources(sync).items()}
    assert uris == {name: m.source.weights_uri for name, m in generating.items()}
    assert set(env(sync)["TOKENIZER_FILES"].split()) == set(manifests.TOKENIZER_FILES)
    # An init container: it ends before the gateway starts, and the gateway loads tokenizers at start.
    assert "restartPolicy" not in sync


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_the_tokenizer_files_come_from_the_bucket_the_engines_stream_from(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    """MODELS_BUCKET is the cluster's bucket (the annotation the engines' MODEL_S3_URI is rewritten from),
    and no S3 URI is in the gateway's pod: TOKENIZER_SOURCES names keys (a bucket there would keep the
    example account's in another cluster)."""
    objs = rendered[overlay]
    pod = _gateway(objs)
    bucket = env(_sync(pod))["MODELS_BUCKET"]
    sa = one(objs, "ServiceAccount", "vllm-engine")
    assert bucket == sa["metadata"]["annotations"]["inferstack.dev/models-bucket"]
    assert {_bucket(env(vllm(e))["MODEL_S3_URI"]) for e in engines(objs)} == {bucket}
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        for var in c.get("env", []):
            assert "s3://" not in str(var.get("value", "")), (c["name"], var["name"])
            assert "111122223333" not in str(var.get("value", "")) or var["name"] == "MODELS_BUCKET", var["name"]
        # The script builds URIs from MODELS_BUCKET (s3://$MODELS_BUCKET/...); it names no bucket itself.
        assert not any(re.search(r"s3://[a-z0-9]", a) for a in c.get("args", []) + c.get("command", [])), c["name"]


def test_another_accounts_bucket_reaches_the_tokenizer_copy(tmp_path: Path) -> None:
    """aws-cluster-values.sh for a cluster whose bucket is not the catalog's: the rendered overlay's
    tokenizer-sync and every engine name that bucket (a copy of k8s/ holds the script's output)."""
    shims = Shims(tmp_path / "shims")
    other = "inferstack-prod-models-444455556666"
    shims.outputs["models_bucket_name"] = other
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    out = tree / "overlays" / "aws-gpu" / "cluster"
    proc = subprocess.run(
        ["bash", str(K8S / "scripts" / "aws-cluster-values.sh")],
        env=shims.env("auto", OUT_DIR=str(out), PLATFORM_OUT_DIR=str(tmp_path / "platform")),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    objs = render(tree / "overlays" / "aws-gpu")
    assert env(_sync(_gateway(objs)))["MODELS_BUCKET"] == other
    assert {_bucket(env(vllm(e))["MODEL_S3_URI"]) for e in engines(objs)} == {other}


def _tf_list(text: str, name: str) -> list[str]:
    """The strings of a list attribute ``name = [...]`` (the first one) in HCL text."""
    found = re.search(rf"\b{name}\s*=\s*\[([^\]]*)\]", text)
    return re.findall(r'"([^"]*)"', found[1]) if found else []


@pytest.mark.parametrize("tf_env", ["dev", "prod"])
def test_the_gateway_role_may_read_each_tokenizer_file_and_no_weights(
    tf_env: str, generating: dict[str, fleet_catalog.Model]
) -> None:
    """terraform/modules/models grants GetObject on ``<read prefix>*/<file>`` for its tokenizer_files
    (the generator's list) and ListBucket on the read prefixes: every file the init container fetches,
    for every generating model, falls under the grant of each environment; weights do not."""
    variables = (REPO / "terraform" / "modules" / "models" / "variables.tf").read_text()
    block = variables[variables.index('variable "tokenizer_files"') :]
    files = _tf_list(block[: block.index("\n}\n")], "default")
    assert files == list(manifests.TOKENIZER_FILES)
    policy = (REPO / "terraform" / "modules" / "models" / "gateway_role.tf").read_text()
    assert '"${aws_s3_bucket.models.arn}/${p}*/${f}"' in policy and "for f in var.tokenizer_files" in policy
    prefixes = _tf_list((REPO / "terraform" / "envs" / tf_env / "main.tf").read_text(), "read_prefixes") or [""]
    for name, m in generating.items():
        key = m.source.weights_uri.removeprefix("s3://").partition("/")[2]
        assert any(key.startswith(p) for p in prefixes), f"{tf_env}: {name}'s listing is outside {prefixes}"
        # IAM's `*` matches any characters, slashes included: fnmatch's does too.
        for f in files:
            assert any(fnmatch.fnmatchcase(key + f, f"{p}*/{f}") for p in prefixes), (tf_env, name, f)
        for weights in ("model.safetensors", "config.json", "model-00001-of-00004.safetensors"):
            assert not any(fnmatch.fnmatchcase(key + weights, f"{p}*/{f}") for p in prefixes for f in files)


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_the_deployed_gateway_routes_models_on_kv_events_and_adapters_by_placement(
    rendered: dict[str, list[Obj]], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway's own Settings, from the overlay's whole ConfigMap: KV events on, base models routed by
    precise_prefix, adapters by adapter_affinity, no client override; subscribed on the port the engines publish on."""
    objs = rendered[overlay]
    for key, value in _config(objs).items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.kv_events.enabled and settings.routing_policy == "precise_prefix"
    assert settings.routing.adapter_policy == "adapter_affinity"
    # ... and by nothing a client chooses (the override header is refused).
    assert not settings.routing.allow_override
    for engine in engines(objs):
        ports = {p["name"]: p["containerPort"] for p in vllm(engine)["ports"]}
        assert ports["kv-events"] == settings.kv_events.port
