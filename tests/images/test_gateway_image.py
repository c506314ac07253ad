"""docker/gateway, built and run for real with podman: the container starts, serves the OpenAI API
on its port 8080 in front of an engine, and holds the gateway and nothing else.

The engine is the project's fake engine, run from the source tree in a second container of the same
pod (the pod's containers share localhost, as a Kubernetes pod's do). About a minute with the base
and the dependency layer cached; the first run on a machine builds both.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import openai
import pytest

from inferstack_devstack import free_port

from ._podman import CONTAINERS_CONF, REPO, STORE, pod, podman, wait_http

MODEL = "tiny-llama"
FAKE_ENGINE = "inferstack_fake_engine"
# Dev tooling that lives in the repository next to the gateway and must stay out of its image.
NOT_IN_IMAGE = ("inferstack_devstack", "inferstack_engine", "inferstack_fake_engine", "torch", "vllm", "pytest")


@pytest.fixture
def gateway(gateway_image: str, note: Callable[[str], None]) -> Iterator[str]:
    """The gateway container (read-only root, as compose and Kubernetes run it) in front of a fake
    engine; yields the gateway's base URL on a loopback port published from the container's 8080."""
    host_port = free_port()
    started = time.monotonic()
    with pod("gateway", {host_port: 8080}) as p:
        p.run(
            "engine",
            gateway_image,
            *("-m", FAKE_ENGINE, "--host", "127.0.0.1", "--port", "8000", "--model", MODEL),
            options=(
                "--entrypoint",
                "python",
                "--volume",
                f"{REPO / 'service'}:/src:ro",
                "--env",
                "PYTHONPATH=/src",
            ),
        )
        container = p.run(
            "gateway",
            gateway_image,
            options=(
                *("--env", "INFERSTACK_UPSTREAMS=http://127.0.0.1:8000"),
                *("--env", "INFERSTACK_AUTH_ENABLED=false"),
                *("--read-only", "--tmpfs", "/tmp", "--security-opt", "no-new-privileges"),
            ),
        )
        url = f"http://127.0.0.1:{host_port}"
        wait_http(f"{url}/readyz", container, deadline_s=60)
        note(f"gateway container: ready {time.monotonic() - started:.1f} s after the pod was created")
        yield url


def test_the_container_serves_the_openai_api_in_front_of_an_engine(gateway: str) -> None:
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0, timeout=20)
    assert MODEL in [m.id for m in client.models.list()]
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=8)
    assert reply.choices[0].message.content
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=8, stream=True
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])


def test_the_image_holds_the_gateway_and_nothing_else(gateway_image: str) -> None:
    probe = (
        "import importlib.util, json, os, inferstack;"
        f"print(json.dumps({{'version': inferstack.__version__, 'uid': os.getuid(),"
        f" 'present': [m for m in {list(NOT_IN_IMAGE)!r} if importlib.util.find_spec(m)]}}))"
    )
    result = podman("run", "--rm", "--no-healthcheck", "--entrypoint", "python", gateway_image, "-c", probe)
    facts = json.loads(result.stdout)
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert facts["version"] == version, "the installed package is not the one in the source tree"
    assert facts["uid"] == 10001
    assert facts["present"] == [], f"dev tooling or engine code in the gateway image: {facts['present']}"


def test_the_image_declares_the_contract_ports_and_entrypoint(gateway_image: str) -> None:
    image = json.loads(podman("image", "inspect", gateway_image).stdout)[0]
    config = image["Config"]
    assert set(config["ExposedPorts"]) == {"8080/tcp", "8081/tcp"}, "public 8080 (http) and admin 8081 (admin)"
    assert config["Entrypoint"] == ["inferstack"] and config["Cmd"] == ["serve"]
    assert config["User"] == "10001:10001"
    assert "/healthz" in " ".join(image["Healthcheck"]["Test"]), "HEALTHCHECK kept (built with --format docker)"


def test_the_image_tokenizes_as_the_gateway_does_outside_it(gateway_image: str) -> None:
    """The local tokenizer's native and template dependencies (tokenizers, jinja2) work in the image:
    the tiny model's files, mounted as a deployment mounts them, give the same chat ids inside as here."""
    from inferstack.kvcache.local_tokenizer import LocalTokenizer
    from inferstack_engine import DEFAULT_MODEL_DIR, tinymodel_build

    model_dir = tinymodel_build(DEFAULT_MODEL_DIR)
    chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "héllo, wörld"}]}
    expected = LocalTokenizer.load(model_dir).token_ids(chat, "chat")
    assert expected, "the tiny model's template renders this chat here"
    probe = (
        "import json, pathlib, sys; from inferstack.kvcache.local_tokenizer import LocalTokenizer;"
        " t = LocalTokenizer.load(pathlib.Path('/tokenizer'));"
        " print(json.dumps(t.token_ids(json.loads(sys.argv[1]), 'chat')))"
    )
    result = podman(
        *("run", "--rm", "--no-healthcheck", "--read-only", "--entrypoint", "python"),
        *("--volume", f"{model_dir}:/tokenizer:ro", gateway_image, "-c", probe, json.dumps(chat)),
    )
    assert json.loads(result.stdout) == expected


def _bench_container() -> ModuleType:
    """bench/container.py, loaded by path (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_container", REPO / "bench" / "container.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_bench_measures_the_gateway_in_the_image(gateway_image: str) -> None:
    """bench/container.py, as `make bench-reference IMAGE=...` uses it: its `podman run` starts the image
    from this store on core 0 with the bench's settings, and the process whose CPU it reads is the
    gateway's own (not the podman client's), which serves the port it was given."""
    bench = _bench_container()
    assert (bench.STORE, bench.CONTAINERS_CONF) == (STORE, CONTAINERS_CONF)
    port, admin_port = free_port(), free_port()
    settings = {
        "INFERSTACK_HOST": "127.0.0.1",
        "INFERSTACK_PORT": str(port),
        "INFERSTACK_ADMIN_PORT": str(admin_port),
        "INFERSTACK_UPSTREAMS": "http://127.0.0.1:9",
        "INFERSTACK_AUTH_ENABLED": "false",
    }
    name = bench.name_for("image-test")
    client = subprocess.Popen(
        bench.run_argv(gateway_image, name, settings, 0),
        env={**os.environ, **bench.ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        pid = 0
        while not pid and client.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(subprocess.CalledProcessError):
                pid = bench.main_pid(name)  # 0 until the container runs
        assert pid > 0, f"the container did not start (podman run: {client.poll()})"
        wait_http(f"http://127.0.0.1:{port}/healthz", name, deadline_s=60)
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert any(arg.endswith(b"/inferstack") for arg in argv) and b"serve" in argv, argv
        assert Path(f"/proc/{pid}/status").read_text().count("Cpus_allowed_list:\t0\n") == 1
        assert "gateway" in bench.image_id(gateway_image)  # the labels the bench records
    finally:
        client.terminate()
        client.wait(60)
        bench.remove(name)
