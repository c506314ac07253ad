"""The gateway's ``tokenizer-sync`` init container, run for real against an S3 emulator.

What runs is the init container of the gateway Deployment as ``kubectl kustomize k8s/overlays/aws-gpu``
renders it (the fleet generator's patch with the cluster values' bucket): its command, args and env,
with ``TOKENIZER_DIR`` moved to a temporary directory (the pod's ``tokenizers`` emptyDir). S3 is moto
(``s3moto``) holding the generated tiny model's whole directory (tokenizer, config, weights) at each
generating model's weights URI, in another bucket than the catalog's: ``MODELS_BUCKET`` set as
``aws-cluster-values.sh`` sets it for another account. The gateway's side is its own code:
``LocalTokenizer`` and ``TokenizerGuard`` loading the directories ``INFERSTACK_KV_EVENTS__LOCAL_TOKENIZER__DIRS``
(from the rendered ConfigMap) names, with the mount path mapped to the temporary directory.

With a real vLLM (``-m vllm``): a gateway process started on the synced directory passes its checks
against the engine's ``/tokenize`` and then tokenizes alone.

Not as in the pod: the script runs under this machine's ``/bin/sh`` (dash: stricter than the image's
bash) with the AWS CLI v1 from PyPI (the image runs v2, not on PyPI), as root on the host, not in
namespaces of its own (an init container has no probes and no SIGTERM to handle). Not covered: real
S3, Pod Identity credentials, the image itself.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import inferstack_devstack as devstack
from inferstack.kvcache.local_tokenizer import LocalTokenizer
from inferstack.kvcache.settings import LocalTokenizerSettings
from inferstack.kvcache.tokenizer_guard import TokenizerGuard
from inferstack_devstack.moto import moto_server
from inferstack_engine import tinymodel_build
from inferstack_engine.paths import DEFAULT_MODEL_DIR
from inferstack_fleet import catalog as fleet_catalog
from inferstack_fleet import manifests

from .s3moto import S3Gate, aws_env, cli_version

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "k8s" / "overlays" / "aws-gpu"
# Another account's bucket: every URI's bucket must be replaced by it (MODELS_BUCKET).
CLUSTER_BUCKET = "inferstack-test-models-444455556666"
Obj = dict[str, Any]

PAYLOADS: list[tuple[str, dict[str, Any]]] = [
    ("chat", {"messages": [{"role": "user", "content": "Hello there, how are you?"}]}),
    (
        "chat",
        {
            "messages": [
                {"role": "system", "content": "You answer in one line about the sea and boats."},
                {"role": "user", "content": "What is a keel?"},
                {"role": "assistant", "content": "The spine of a boat."},
                {"role": "user", "content": "And a <|eot_id|> in text?"},
            ]
        },
    ),
    ("chat", {"messages": [{"role": "user", "content": "Go on"}], "add_generation_prompt": False}),
    ("completions", {"prompt": "Once upon a time, in a harbour far away,"}),
    ("completions", {"prompt": "No special tokens here.", "add_special_tokens": False}),
]


@pytest.fixture(scope="module")
def rendered() -> list[Obj]:
    kubectl = shutil.which("kubectl") or shutil.which("kubectl", path=str(REPO / ".venv-k8s" / "bin"))
    if kubectl is None:
        pytest.fail("kubectl (with kustomize) is needed: run scripts/install-k8s.sh")
    proc = subprocess.run([kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="module")
def gateway_pod(rendered: list[Obj]) -> Obj:
    (gateway,) = [o for o in rendered if o["kind"] == "Deployment" and o["metadata"]["name"] == "inferstack-gateway"]
    return dict(gateway["spec"]["template"]["spec"])


@pytest.fixture(scope="module")
def container(gateway_pod: Obj) -> Obj:
    (init,) = [c for c in gateway_pod["initContainers"] if c["name"] == "tokenizer-sync"]
    return dict(init)


@pytest.fixture(scope="module")
def dirs(rendered: list[Obj]) -> dict[str, str]:
    """INFERSTACK_KV_EVENTS__LOCAL_TOKENIZER__DIRS as the gateway reads it from its ConfigMap."""
    (config,) = [
        o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("inferstack-gateway")
    ]
    return LocalTokenizerSettings.model_validate_json(
        json.dumps({"dirs": json.loads(config["data"]["INFERSTACK_KV_EVENTS__LOCAL_TOKENIZER__DIRS"])})
    ).dirs


@pytest.fixture(scope="module")
def models() -> list[fleet_catalog.Model]:
    found = [m for m in fleet_catalog.load(REPO / "fleet").models if m.task == "generate"]
    assert len(found) >= 2, "the test wants two generating models (one with chat_template.jinja)"
    return found


@pytest.fixture(scope="module")
def tiny() -> Path:
    """The generated tiny model's directory (built by the engine venv, reused when current)."""
    return tinymodel_build(DEFAULT_MODEL_DIR)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    (REPO / ".cache").mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="tokenizer-sync-", dir=REPO / ".cache"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def key(uri: str) -> str:
    return uri.removeprefix("s3://").partition("/")[2]


@dataclass
class Bucket:
    url: str
    client: Any

    def put_dir(self, uri: str, source: Path) -> None:
        """``source``'s files below ``uri``'s key, in CLUSTER_BUCKET (whatever bucket ``uri`` names)."""
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            body = path.read_bytes()
            self.client.put_object(Bucket=CLUSTER_BUCKET, Key=key(uri) + str(path.relative_to(source)), Body=body)


@pytest.fixture(scope="module")
def s3() -> Iterator[Bucket]:
    with moto_server() as url:
        client = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
        )
        client.create_bucket(Bucket=CLUSTER_BUCKET)
        yield Bucket(url, client)


def env_of(container: Obj) -> dict[str, str]:
    return {v["name"]: v["value"] for v in container["env"]}


def run_init(container: Obj, target: Path, endpoint: str, **override: str) -> subprocess.CompletedProcess[str]:
    """The init container's command with its env (TOKENIZER_DIR moved to ``target``, an empty directory
    as the emptyDir starts), MODELS_BUCKET the other account's; its exit status and log."""
    env = env_of(container)
    env |= {"TOKENIZER_DIR": str(target), "MODELS_BUCKET": CLUSTER_BUCKET, **override}
    home = Path(tempfile.mkdtemp(prefix="home-", dir=target.parent))
    env["HOME"] = str(home)  # the pod's tokenizer-sync-tmp
    target.mkdir()
    argv = ["env", "-i", *(f"{k}={v}" for k, v in aws_env(env, endpoint).items())]
    argv += [*container["command"], *container["args"]]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


def synced_dir(dirs: dict[str, str], model: str, target: Path) -> Path:
    """The gateway's directory for ``model`` (under the mount path), on this machine."""
    mount = manifests.TOKENIZER_DIR
    assert dirs[model].startswith(mount + "/"), dirs[model]
    return target / dirs[model].removeprefix(mount + "/")


async def guard_of(dirs: dict[str, str], target: Path) -> tuple[list[str], dict[str, float | None]]:
    """The gateway's TokenizerGuard on these directories: the models it loaded, and its gauge per model."""
    local = {m: str(synced_dir(dirs, m, target)) for m in dirs}
    registry = CollectorRegistry()
    async with aiohttp.ClientSession() as session:
        guard = TokenizerGuard(LocalTokenizerSettings(dirs=local), session, registry)
        gauge = {m: registry.get_sample_value("inferstack_kv_tokenizer_local", {"model": m}) for m in dirs}
        await guard.close()
    return guard.models(), gauge


@pytest.fixture(scope="module")
def sources(models: list[fleet_catalog.Model], tiny: Path, s3: Bucket, workdir: Path) -> dict[str, Path]:
    """The tiny model's whole directory at each generating model's weights URI (the second model with
    its chat template in a file of its own, as recent models ship it, and a tokenizer.json in a
    subdirectory that is not the gateway's), in the cluster's bucket."""
    out: dict[str, Path] = {}
    for i, m in enumerate(models):
        source = workdir / "sources" / m.name
        shutil.copytree(tiny, source)
        (source / "original").mkdir()
        shutil.copy(source / "tokenizer.json", source / "original" / "tokenizer.json")
        if i == 1:
            config = json.loads((source / "tokenizer_config.json").read_text())
            (source / "chat_template.jinja").write_text(config["chat_template"].replace("| trim", "| trim "))
        s3.put_dir(m.source.weights_uri, source)
        out[m.name] = source
    return out


async def test_each_model_gets_its_tokenizer_files_and_no_weights(
    container: Obj,
    dirs: dict[str, str],
    models: list[fleet_catalog.Model],
    sources: dict[str, Path],
    workdir: Path,
    s3: Bucket,
) -> None:
    """Every generating model's tokenizer files land where DIRS points the gateway, byte for byte, from
    the cluster's bucket; weights, configs and files in subdirectories stay in S3. The gateway loads
    each, and its ids equal those of the source directory for chats and completions."""
    assert set(dirs) == {m.name for m in models}, "DIRS names exactly the generating models"

    target = workdir / "happy" / "tokenizers"
    target.parent.mkdir()
    proc = run_init(container, target, s3.url)
    print(cli_version(), "\n", proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in target.iterdir()) == sorted(dirs), "one directory per model, nothing partial"
    for name, source in sources.items():
        got = synced_dir(dirs, name, target)
        files = {p.name: p.read_bytes() for p in got.rglob("*") if p.is_file()}
        expected = {p.name: p.read_bytes() for p in source.iterdir() if p.name in manifests.TOKENIZER_FILES}
        assert files == expected, name
        assert "model.safetensors" not in files and "config.json" not in files
        theirs, ours = LocalTokenizer.load(source), LocalTokenizer.load(got)
        assert ours.template_source == theirs.template_source
        for kind, payload in PAYLOADS:
            ids = ours.token_ids(payload, kind)
            assert ids is not None and ids == theirs.token_ids(payload, kind), (name, payload)
    assert "chat_template.jinja" in {p.name for p in synced_dir(dirs, models[1].name, target).iterdir()}
    loaded, gauge = await guard_of(dirs, target)
    assert sorted(loaded) == sorted(dirs)
    assert all(v == 0 for v in gauge.values()), "loaded, on probation until the engine agrees"


async def test_s3_refusing_leaves_no_files_and_the_pod_starts(
    container: Obj, dirs: dict[str, str], s3: Bucket, workdir: Path
) -> None:
    """S3 answers 403 AccessDenied (a role without the grant): each model is tried ATTEMPTS times, the
    container still exits 0 (the gateway starts; its engines tokenize), nothing half-copied is left,
    and the gateway exports inferstack_kv_tokenizer_local 0 for every model (the fallback alert's input)."""
    gate = S3Gate(int(s3.url.rsplit(":", 1)[1]))  # closed: every request refused
    try:
        target = workdir / "refused" / "tokenizers"
        target.parent.mkdir()
        proc = run_init(container, target, f"http://127.0.0.1:{gate.port}", RETRY_SECONDS="0")
    finally:
        gate.close()
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    attempts = env_of(container)["ATTEMPTS"]
    for model in dirs:
        assert f"tokenizer-sync: {model}: no files from s3://{CLUSTER_BUCKET}/" in proc.stdout
        assert f"after {attempts} attempts: its engines tokenize" in proc.stdout
    assert list(target.iterdir()) == []
    loaded, gauge = await guard_of(dirs, target)
    assert loaded == [] and gauge == dict.fromkeys(dirs, 0.0)


def test_s3_hanging_delays_the_gateway_a_bounded_time(
    container: Obj, dirs: dict[str, str], models: list[fleet_catalog.Model], workdir: Path
) -> None:
    """An endpoint that accepts connections and never answers (S3 hanging): each CLI call gives up after
    AWS_MAX_ATTEMPTS read timeouts, no attempt starts after DEADLINE_SECONDS, and the container exits 0
    with nothing copied. Timeouts cut to 1 s and the deadline to 3 s here (generated: 10 s and 60 s)."""
    hanging = socket.create_server(("127.0.0.1", 0), backlog=64)  # the kernel completes handshakes
    port = int(hanging.getsockname()[1])
    target = workdir / "hanging" / "tokenizers"
    target.parent.mkdir()
    started = time.monotonic()
    try:
        proc = run_init(
            container, target, f"http://127.0.0.1:{port}",
            S3_TIMEOUT_SECONDS="1", DEADLINE_SECONDS="3", RETRY_SECONDS="0",
        )  # fmt: skip
    finally:
        hanging.close()
    took = time.monotonic() - started
    retries = int(env_of(container)["AWS_MAX_ATTEMPTS"])
    print(f"S3 hanging: exit {proc.returncode} after {took:.1f} s\n{proc.stdout}")
    assert proc.returncode == 0, proc.stderr
    assert list(target.iterdir()) == []
    first, *rest = manifests.tokenizer_models(list(models))
    assert f"tokenizer-sync: {first.name}: no files from " in proc.stdout
    for m in rest:
        assert f"tokenizer-sync: {m.name}: no files from s3://{CLUSTER_BUCKET}/{key(m.source.weights_uri)} after 0" in (
            proc.stdout
        )
    assert proc.stdout.count("(deadline)") == len(dirs)
    # The deadline, one attempt's CLI retries at the timeout, and the CLI's start-up (seconds here).
    assert took < 3 + retries * 1 + 30, took


async def test_a_model_without_tokenizer_files_is_left_to_its_engines(
    container: Obj,
    dirs: dict[str, str],
    models: list[fleet_catalog.Model],
    sources: dict[str, Path],
    tiny: Path,
    s3: Bucket,
    workdir: Path,
) -> None:
    """Weights uploaded without the tokenizer files (an incomplete upload): the copy finds nothing, the
    gateway's directory for that model is empty, it does not load and exports 0; the others load."""
    weights_only = workdir / "weights-only"
    weights_only.mkdir()
    shutil.copy(tiny / "config.json", weights_only / "config.json")
    bare = models[0]
    revision = fleet_catalog.Source(uri=bare.source.uri, revision="weights-only")
    s3.put_dir(revision.weights_uri, weights_only)
    sources = "".join(f"{m.name} {key(m.source.weights_uri)}\n" for m in models[1:])
    sources = f"{bare.name} {key(revision.weights_uri)}\n{sources}"
    target = workdir / "bare" / "tokenizers"
    target.parent.mkdir()
    proc = run_init(container, target, s3.url, TOKENIZER_SOURCES=sources)
    assert proc.returncode == 0, proc.stderr
    assert list(synced_dir(dirs, bare.name, target).iterdir()) == []
    loaded, gauge = await guard_of(dirs, target)
    assert sorted(loaded) == sorted(m.name for m in models[1:]) and gauge[bare.name] == 0


@pytest.mark.vllm
def test_a_gateway_on_the_synced_files_routes_by_its_own_ids(
    container: Obj, dirs: dict[str, str], models: list[fleet_catalog.Model], sources: dict[str, Path],
    workdir: Path, s3: Bucket, vllm_engine: str, run_dir: Path,
) -> None:  # fmt: skip
    """The gateway process itself (settings from its environment), in front of the session's real vLLM
    serving the tiny model, with DIRS naming a directory the init container wrote: its checks agree
    with the engine's /tokenize, and past them it tokenizes alone (the gauge the alert reads is 1).
    The engine serves the tiny model as ``tiny-llama``, so DIRS maps that name to a catalogued
    model's synced directory (which holds the tiny model's files)."""
    target = workdir / "e2e" / "tokenizers"
    target.parent.mkdir()
    proc = run_init(container, target, s3.url)
    assert proc.returncode == 0, proc.stderr
    synced = synced_dir(dirs, models[0].name, target)
    assert (synced / "tokenizer.json").is_file()
    stack = devstack.Stack(run_dir=run_dir)
    try:
        env = devstack.local_tokenizer_env(vllm_engine, run_dir, {"tiny-llama": str(synced)})
        gateway = devstack.start_gateway(stack, [vllm_engine], env=env)
        with httpx.Client(base_url=gateway.url, timeout=120) as client:
            for i in range(5):
                messages = [
                    {"role": "system", "content": f"You keep a lighthouse on rock number {i}. " * 20},
                    {"role": "user", "content": "Which light?"},
                ]
                resp = client.post(
                    "/v1/chat/completions",
                    headers={"x-inferstack-routing-policy": "precise_prefix"},
                    json={"model": "tiny-llama", "max_tokens": 1, "messages": messages},
                )
                assert resp.status_code == 200, resp.text
        samples = {
            (name, tuple(sorted(labels.items()))): value
            for family in text_string_to_metric_families(httpx.get(gateway.admin_url + "/metrics", timeout=10).text)
            for name, labels, value, *_ in family.samples
        }
        model = (("model", "tiny-llama"),)
        assert samples[("inferstack_kv_tokenizer_local", model)] == 1
        assert samples[("inferstack_kv_tokenizer_checks_total", (*model, ("outcome", "same")))] == 2
        assert samples[("inferstack_kv_tokenizer_checks_total", (*model, ("outcome", "differ")))] == 0
        assert samples[("inferstack_kv_local_tokenize_seconds_count", ())] == 5
    finally:
        stack.stop()
