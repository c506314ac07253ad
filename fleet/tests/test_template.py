"""Deriving an engine from the base Deployment works with both ways the base has named the model
(the image's MODEL_S3_URI / MODEL_NAME env, or the older fetch-model copy), and refuses a base that
has neither instead of generating engines that all serve the base's model."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from inferstack_fleet import manifests
from inferstack_fleet.catalog import load

EXAMPLE = Path(__file__).resolve().parents[1]
LLAMA = next(m for m in load(EXAMPLE).models if m.name == "llama-3.3-70b-instruct")


def template(env: list[dict[str, str]], args: list[str], init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    vllm = {
        "name": "vllm",
        "args": args,
        "env": env,
        "ports": [{"name": "http", "containerPort": 8000}],
        "resources": {"requests": {"cpu": "3", "memory": "12Gi"}, "limits": {"cpu": "4", "memory": "14Gi"}},
    }
    spec: dict[str, Any] = {"containers": [vllm]}
    if init is not None:
        spec["initContainers"] = init
    return {"metadata": {"name": "vllm-engine"}, "spec": {"template": {"metadata": {}, "spec": spec}}}


def vllm_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


def test_the_entrypoint_form_gets_the_models_uri_and_name() -> None:
    base = template(
        [{"name": "MODEL_NAME", "value": "qwen"}, {"name": "MODEL_S3_URI", "value": "s3://b/models/qwen/"}],
        ["--max-model-len=8192", "--tensor-parallel-size=1", "--enable-prefix-caching"],
    )
    vllm = vllm_of(manifests.deployment(LLAMA, copy.deepcopy(base)))
    env = {e["name"]: e["value"] for e in vllm["env"]}
    assert env["MODEL_NAME"] == "llama-3.3-70b-instruct"
    assert env["MODEL_S3_URI"] == (
        "s3://inferstack-dev-models-111122223333/models/Llama-3.3-70B-Instruct/6f6073b423013f6a7d4d9f39144961bfbfbc386b/"
    )
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    # The catalog's knobs replace the base's, the rest of the base's flags stay.
    assert vllm["args"][:4] == [
        "--max-model-len=16384",
        "--gpu-memory-utilization=0.92",
        "--tensor-parallel-size=4",
        "--max-num-seqs=32",
    ]
    assert "--enable-prefix-caching" in vllm["args"]
    assert not any(a.startswith("--served-model-name") for a in vllm["args"])
    assert vllm["resources"]["limits"] == {"cpu": "16", "memory": "56Gi", "nvidia.com/gpu": "4"}


def test_the_fetch_model_form_copies_the_models_uri() -> None:
    script = 'aws s3 sync "s3://${MODELS_BUCKET}/models/${MODEL_DIR}/" "/model-cache/${MODEL_DIR}"'
    init = [{"name": "fetch-model", "args": [script], "env": [{"name": "MODEL_DIR", "value": "Qwen"}]}]
    base = template([], ["--model=/model-cache/Qwen", "--served-model-name=qwen"], init)
    deployment = manifests.deployment(LLAMA, base)
    fetch = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert fetch["args"] == ['aws s3 sync "${MODEL_S3_URI}" "/model-cache/${MODEL_DIR}"']
    env = {e["name"]: e["value"] for e in fetch["env"]}
    assert env["MODEL_DIR"] == "llama-3-3-70b-instruct"
    assert env["MODEL_S3_URI"].endswith("/Llama-3.3-70B-Instruct/6f6073b423013f6a7d4d9f39144961bfbfbc386b/")
    args = vllm_of(deployment)["args"]
    assert args[:2] == ["--model=/model-cache/llama-3-3-70b-instruct", "--served-model-name=llama-3.3-70b-instruct"]
    assert "--model=/model-cache/Qwen" not in args


def test_a_base_that_names_its_model_some_other_way_is_refused() -> None:
    with pytest.raises(manifests.TemplateError, match="neither a MODEL_S3_URI env var nor the fetch-model copy"):
        manifests.deployment(LLAMA, template([], ["--model=/weights"]))
