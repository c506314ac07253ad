"""The engines' ``adapter-sync`` sidecar, run for real against an S3 emulator.

What runs is the container the fleet generator writes into a catalogued model's engine Deployment
(``inferstack_fleet.manifests.adapter_sync``, taken from ``manifests.deployment``'s output): its
command, args and env, with ``ADAPTERS_DIR`` moved to a temporary directory and ``SYNC_SECONDS`` cut
to 0 (left at 60 in the SIGTERM test). S3 is moto (``moto_server``, local, plain HTTP) holding the
catalog's adapters where the catalog says they are (tiny-model LoRA adapters from
``inferstack_engine.tinylora``).

As in the pod: the script is PID 1 of its own PID namespace (PID 1 ignores a SIGTERM it does not
trap), in its own mount namespace whose ``/tmp`` is its own directory (the pod's ``adapter-sync-tmp``
emptyDir), and the probes run their exact commands in that namespace (``nsenter``), as the kubelet's
exec probes do. Namespaces and mounts need root: the test runs them through ``sudo -n`` when it is
not root (CI's runner).

The AWS CLI is version 1 (``awscli`` from PyPI, requirements/fleet.txt). The image runs version 2
(``public.ecr.aws/aws-cli/aws-cli``), which is not on PyPI. ``aws s3 sync SRC DST --delete
--exact-timestamps --only-show-errors`` and its exit status behave the same in both for what is
asserted here. Not covered: real S3, Pod Identity credentials, the v2 image itself (its shell,
``test``, ``find``).

Between the CLI and moto sits a relay that can refuse S3: closed, it answers every request with S3's
403 AccessDenied at once (what a pod whose role lost the bucket gets). An unreachable endpoint would
cost the CLI about 10 s of retries per sync; moto's state survives a closed relay.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest

from inferstack import catalog as gateway_catalog
from inferstack.config import Adapters, Settings
from inferstack.metrics.gateway import GatewayMetrics
from inferstack.upstream.adapter_loader import AdapterLoader
from inferstack.upstream.adapters import AdapterPlacement
from inferstack.upstream.endpoint import Endpoint
from inferstack_devstack.moto import moto_server
from inferstack_engine import tinylora
from inferstack_fleet import catalog as fleet_catalog
from inferstack_fleet import generate, manifests

from .s3moto import DEADLINE, S3Gate, aws_env, cli_version, wait_for

REPO = Path(__file__).resolve().parents[2]
# No pause between syncs: each `aws` run spends 1-3 s importing itself on this machine already.
SYNC_SECONDS = 0
Obj = dict[str, Any]


@functools.cache
def root_prefix() -> list[str]:
    """How to run a command as root: directly, or through passwordless sudo (GitHub's runner)."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    pytest.fail("the adapter-sync test needs root or passwordless sudo (unshare, mount, nsenter)")


# -- S3 ----------------------------------------------------------------------------------------------


@dataclass
class S3:
    url: str
    client: Any
    bucket: str

    def put_adapter(self, uri: str, source: Path) -> dict[str, bytes]:
        """Upload an adapter directory below ``uri``; its objects, key -> bytes."""
        prefix = self.key(uri)
        objects = {prefix + p.name: p.read_bytes() for p in sorted(source.iterdir())}
        for key, body in objects.items():
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
        return objects

    def delete_prefix(self, uri: str) -> None:
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.key(uri))
        for obj in listed.get("Contents", []):
            self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])

    def objects(self, uri: str) -> dict[str, bytes]:
        """Every object below ``uri``, by its key relative to ``uri``."""
        prefix = self.key(uri)
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return {
            o["Key"][len(prefix) :]: self.client.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read()
            for o in listed.get("Contents", [])
        }

    def key(self, uri: str) -> str:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        assert bucket == self.bucket, uri
        return key


@pytest.fixture(scope="module")
def catalog() -> fleet_catalog.Catalog:
    return fleet_catalog.load(REPO / "fleet")


@pytest.fixture(scope="module")
def model(catalog: fleet_catalog.Catalog) -> fleet_catalog.Model:
    """The catalogued model with LoRA that has the most adapter versions."""
    versions = {m.name: len(served_versions(catalog, m.name)) for m in catalog.models if m.lora is not None}
    assert versions and max(versions.values()) > 0, "no catalogued model with LoRA adapters"
    return next(m for m in catalog.models if m.name == max(versions, key=lambda n: versions[n]))


def served_versions(catalog: fleet_catalog.Catalog, base: str) -> dict[str, str]:
    """Served name (``sql-bot@v3``) -> S3 source, for every adapter version of ``base``."""
    out = {}
    for entry in catalog.adapters:
        if entry.base != base:
            continue
        a = entry.adapter
        out[fleet_catalog.served_name(a.name, a.version)] = a.source
        if a.rollout is not None:
            out[fleet_catalog.served_name(a.name, a.rollout.version)] = a.rollout.source
    return out


@pytest.fixture(scope="module")
def deployment(model: fleet_catalog.Model) -> Obj:
    """The model's engine Deployment, as the generator writes it."""
    return manifests.deployment(model, generate.engine_template(generate.render_base(REPO)))


@pytest.fixture(scope="module")
def container(deployment: Obj) -> Obj:
    """Its adapter-sync container."""
    (sidecar,) = [c for c in deployment["spec"]["template"]["spec"]["initContainers"] if c["name"] == "adapter-sync"]
    return dict(sidecar)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """Outside /tmp: the pod's namespace gets a /tmp of its own, which hides the host's."""
    (REPO / ".cache").mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="adapter-sync-", dir=REPO / ".cache"))
    try:
        yield path
    finally:
        # The sidecar wrote as root: remove as root too.
        subprocess.run([*root_prefix(), "rm", "-rf", str(path)], check=False, timeout=60)


@pytest.fixture(scope="module")
def s3(model: fleet_catalog.Model, catalog: fleet_catalog.Catalog, workdir: Path) -> Iterator[S3]:
    """moto with the model's adapters at their catalogued sources."""
    with moto_server() as url:
        client = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
        )
        assert model.lora is not None
        bucket = model.lora.adapters_uri.removeprefix("s3://").split("/", 1)[0]
        client.create_bucket(Bucket=bucket)
        store = S3(url, client, bucket)
        for served, source in served_versions(catalog, model.name).items():
            built = tinylora.build(workdir / "built" / served, seed=tinylora.seed_for(served))
            store.put_adapter(source, built)
        yield store


# -- the pod ------------------------------------------------------------------------------------------

# unshare's child becomes PID 1 of the new namespace; it bind-mounts the pod's /tmp, then execs the
# container's command: PID 1 is the container's shell, as in the pod.
_ENTER = 'mount --bind "$1" /tmp && shift && exec "$@"'


@dataclass
class Pod:
    container: Obj
    env: dict[str, str]
    tmp: Path
    adapters: Path
    proc: subprocess.Popen[str]
    pid: int = 0
    output: list[str] = field(default_factory=list)

    def probe(self, kind: str) -> int:
        """The probe's exec command in the pod's namespaces: its exit status (0 passes)."""
        command = self.container[kind]["exec"]["command"]
        return self.run(command).returncode

    def run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        env = [f"{k}={v}" for k, v in self.env.items()]
        nsenter = ["nsenter", "-t", str(self.pid), "-m", "-p", "--", "env", "-i", *env, *command]
        return subprocess.run([*root_prefix(), *nsenter], capture_output=True, text=True, timeout=30, check=False)

    def read_output(self) -> None:
        """The container's log (stdout and stderr), line by line as it comes."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def failures(self) -> int:
        """Syncs that failed so far: the CLI's `fatal error:` lines (its only output with --only-show-errors)."""
        return sum(1 for line in list(self.output) if line.startswith("fatal error:"))

    def marker(self) -> int | None:
        """The mtime of the pod's /tmp/synced (ns), None when absent."""
        try:
            return (self.tmp / "synced").stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"the sidecar exited ({self.proc.returncode}):\n" + "".join(self.output))
        return True

    def synced_after(self, t_ns: int) -> int:
        """Wait for a good sync that ended after ``t_ns`` (time.time_ns()); the marker's new mtime."""
        wait_for("a good sync", lambda: self.alive() and (self.marker() or 0) > t_ns)
        return self.marker() or 0

    def failed_twice(self) -> None:
        """Wait until two more syncs have failed: the first of them has then run its whole turn of the
        loop (the second started after it), so whatever it would have touched, it did."""
        before = self.failures()
        wait_for("two failed syncs", lambda: self.alive() and self.failures() >= before + 2)

    def inodes(self) -> dict[str, int]:
        """A file fetched again gets a new inode (the CLI downloads to a temporary name, then renames)."""
        return {str(p.relative_to(self.adapters)): p.stat().st_ino for p in self.adapters.rglob("*") if p.is_file()}

    def files(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.adapters)): p.read_bytes() for p in self.adapters.rglob("*") if p.is_file()}


@contextlib.contextmanager
def run_pod(container: Obj, gate: S3Gate, workdir: Path, sync_seconds: int | None = SYNC_SECONDS) -> Iterator[Pod]:
    """The container as the pod runs it, ``SYNC_SECONDS`` replaced unless None, its adapters in a
    directory of its own."""
    base = Path(tempfile.mkdtemp(prefix="pod-", dir=workdir))
    tmp, adapters = base / "tmp", base / "adapters"
    tmp.mkdir()
    adapters.mkdir()
    env = {v["name"]: v["value"] for v in container["env"]}
    env["ADAPTERS_DIR"] = str(adapters)
    if sync_seconds is not None:
        env["SYNC_SECONDS"] = str(sync_seconds)
    env = aws_env(env, f"http://127.0.0.1:{gate.port}")
    unshare = ["unshare", "--pid", "--fork", "--mount-proc", "--mount", "--kill-child"]
    command = [*container["command"], *container["args"]]
    argv = [*root_prefix(), "env", "-i", *(f"{k}={v}" for k, v in env.items())]
    argv += [*unshare, "--", "/bin/sh", "-c", _ENTER, "enter", str(tmp), *command]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pod = Pod(container, env, tmp, adapters, proc)
    threading.Thread(target=pod.read_output, daemon=True).start()
    try:
        pod.pid = _namespace_init(proc.pid)
        yield pod
    finally:
        if proc.poll() is None:
            if pod.pid:
                subprocess.run([*root_prefix(), "kill", "-KILL", str(pod.pid)], check=False)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _namespace_init(launcher: int) -> int:
    """The host PID of the namespace's PID 1: unshare's child (under sudo, sudo's grandchild)."""
    found: list[int] = []

    def look() -> bool:
        pid = launcher
        while True:
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except FileNotFoundError:
                pytest.fail("the sidecar's launcher exited")
            if comm == "unshare" and children:
                found.append(int(children[0]))
                return True
            if not children:
                return False
            pid = int(children[0])

    wait_for("the pod's PID 1", look)
    return found[0]


# -- the tests ------------------------------------------------------------------------------------------


def test_the_sidecar_mirrors_the_adapters_as_its_probes_say(
    container: Obj, model: fleet_catalog.Model, s3: S3, workdir: Path
) -> None:
    assert model.lora is not None
    uri = model.lora.adapters_uri
    drafts = {v: f"{uri}draft-bot/{v}/" for v in ("v1", "v2", "v3")}
    built = {v: tinylora.build(workdir / "built" / f"draft-bot@{v}", seed=tinylora.seed_for(v)) for v in drafts}
    for version in ("v1", "v2"):
        s3.put_adapter(drafts[version], built[version])
    gate = S3Gate(int(s3.url.rsplit(":", 1)[1]))
    try:
        with run_pod(container, gate, workdir) as pod:
            print(f"{model.name}: {uri}; {cli_version()} (v1: the image's v2 is not on PyPI)")
            # S3 refuses: no good sync yet, so neither the startup nor the readiness probe passes.
            before = pod.failures()
            wait_for("a failed sync", lambda: pod.alive() and pod.failures() > before)
            assert pod.marker() is None and pod.files() == {}
            assert pod.probe("startupProbe") != 0 and pod.probe("readinessProbe") != 0

            # S3 answers: the startup probe passes, and then every file is there, byte for byte.
            gate.open = True
            took = wait_for("the startup probe passing", lambda: pod.alive() and pod.probe("startupProbe") == 0)
            assert pod.files() == s3.objects(uri)
            assert pod.probe("readinessProbe") == 0 and pod.probe("livenessProbe") == 0
            print(f"startup probe passed {took:.1f} s after S3 answered")
            fetched = pod.inodes()

            # S3 changes: an adapter added, one deleted, weights overwritten by others of the same size.
            # By the end of the first sync that starts after the change (the second good sync after it:
            # the first may have listed S3 before it) the disk is S3 again: the new adapter there, the
            # deleted one gone (--delete; `s3 sync` leaves its emptied directory), the new weights
            # fetched (--exact-timestamps); and nothing else fetched again.
            weights = "draft-bot/v2/" + tinylora.WEIGHTS_FILE
            rebuilt = tinylora.build(workdir / "built" / "draft-bot@v2-again", seed=tinylora.seed_for("v2") + 1)
            new_weights = (rebuilt / tinylora.WEIGHTS_FILE).read_bytes()
            old_weights = (pod.adapters / weights).read_bytes()
            assert len(new_weights) == len(old_weights) and new_weights != old_weights
            # S3's LastModified has a resolution of one second, and `s3 sync --exact-timestamps`
            # compares it with the local copy's mtime: an overwrite of the same size within the
            # second of the first write cannot be told from it (docs/fleet-operations.md). The test
            # setup wrote v2 about a second ago on a fast machine, so the overwrite waits for the
            # next second.
            written = s3.client.head_object(Bucket=s3.bucket, Key=s3.key(uri) + weights)["LastModified"]
            wait_for("the second after v2's upload", lambda: time.time() >= written.timestamp() + 1, timeout=2)
            changed = time.time_ns()
            s3.put_adapter(drafts["v3"], built["v3"])
            s3.delete_prefix(drafts["v1"])
            s3.client.put_object(Bucket=s3.bucket, Key=s3.key(uri) + weights, Body=new_weights)
            pod.synced_after(pod.synced_after(changed))
            print(f"S3 changed: the disk followed {(time.time_ns() - changed) / 1e9:.1f} s later")
            assert pod.files() == s3.objects(uri)
            assert (pod.adapters / "draft-bot/v3" / tinylora.CONFIG_FILE).is_file()
            assert not any(p.is_file() for p in (pod.adapters / "draft-bot/v1").rglob("*"))
            assert pod.files()[weights] == new_weights
            unchanged = {k: v for k, v in fetched.items() if not k.startswith(("draft-bot/v1/", weights))}
            assert pod.inodes().items() >= unchanged.items(), "unchanged objects were fetched again"

            # S3 refuses again: failed syncs leave the files and do not refresh the marker, so after
            # 15 minutes of them (the marker is aged here instead) the liveness probe fails, and the
            # kubelet restarts the sidecar after 3 such probes; readiness still passes.
            gate.open = False
            before = pod.failures()
            wait_for("a failed sync", lambda: pod.alive() and pod.failures() > before)  # no good sync in flight
            files = pod.files()
            assert pod.probe("livenessProbe") == 0
            aged = pod.run(["touch", "-d", "16 minutes ago", "/tmp/synced"])
            assert aged.returncode == 0, aged.stderr
            aged_mtime = pod.marker()
            pod.failed_twice()
            assert pod.marker() == aged_mtime and pod.files() == files
            assert pod.probe("livenessProbe") != 0
            assert pod.probe("readinessProbe") == 0 and pod.probe("startupProbe") == 0

            # S3 answers again: the next good sync refreshes the marker, liveness passes again.
            gate.open = True
            pod.synced_after(aged_mtime or 0)
            assert pod.probe("livenessProbe") == 0
    finally:
        gate.close()
        s3.delete_prefix(f"{uri}draft-bot/")  # the module's other tests see the catalog's adapters only


def test_sigterm_ends_it_at_once_with_status_0(container: Obj, s3: S3, workdir: Path) -> None:
    """SIGTERM, what the kubelet sends PID 1, ends the sidecar at once with status 0: the trap runs while
    the loop waits for its sleep. The generated sync period here (60 s): a trap that waited for the sleep
    to end would outlast the pod's termination grace period (30 s) and be killed."""
    gate = S3Gate(int(s3.url.rsplit(":", 1)[1]))
    gate.open = True
    try:
        with run_pod(container, gate, workdir, sync_seconds=None) as pod:
            assert int(pod.env["SYNC_SECONDS"]) == manifests.ADAPTER_SYNC_SECONDS
            pod.synced_after(0)  # the first sync is done: it is in its sleep
            sent = time.monotonic()
            subprocess.run([*root_prefix(), "kill", "-TERM", str(pod.pid)], check=True)
            status = pod.proc.wait(timeout=DEADLINE)
            stopped = time.monotonic() - sent
            print(f"SIGTERM: exit {status} after {stopped:.2f} s")
            assert status == 0, "".join(pod.output)
            assert stopped < 5, "the trap waited for the sleep to end"
    finally:
        gate.close()


@pytest.fixture(scope="module")
def gateway_root(catalog: fleet_catalog.Catalog) -> str:
    """INFERSTACK_ADAPTERS__ROOT as the generator sets it in the gateway's config."""
    (root,) = [
        literal.split("=", 1)[1]
        for generator in generate.kustomization(catalog)["configMapGenerator"]
        for literal in generator.get("literals", [])
        if literal.startswith("INFERSTACK_ADAPTERS__ROOT=")
    ]
    return root


@pytest.fixture(scope="module")
def gateway_view(catalog: fleet_catalog.Catalog, workdir: Path) -> gateway_catalog.Catalog:
    """The generated catalog.json, loaded by the gateway's own code."""
    path = workdir / "catalog.json"
    path.write_text(json.dumps(generate.gateway_catalog(catalog)))
    return gateway_catalog.Catalog.load(str(path))


@pytest.fixture(scope="module")
def synced(container: Obj, s3: S3, workdir: Path) -> Iterator[Pod]:
    """A sidecar past its startup probe, S3 open, syncing every 60 s as generated (so it is idle)."""
    gate = S3Gate(int(s3.url.rsplit(":", 1)[1]))
    gate.open = True
    try:
        with run_pod(container, gate, workdir, sync_seconds=None) as pod:
            wait_for("the startup probe passing", lambda: pod.alive() and pod.probe("startupProbe") == 0)
            yield pod
    finally:
        gate.close()


def test_each_adapter_version_is_where_the_gateway_points_vllm(
    synced: Pod,
    deployment: Obj,
    catalog: fleet_catalog.Catalog,
    model: fleet_catalog.Model,
    gateway_root: str,
    gateway_view: gateway_catalog.Catalog,
    s3: S3,
) -> None:
    """The contract with the gateway: the path it sends in ``POST /v1/load_lora_adapter`` for each
    adapter version of the model, read on the engine's side of the shared volume, holds that version's
    files as S3 has them."""
    pod = deployment["spec"]["template"]["spec"]
    vllm = next(c for c in pod["containers"] if c["name"] == "vllm")
    sidecar_dir = next(v["value"] for v in synced.container["env"] if v["name"] == "ADAPTERS_DIR")
    volume = next(m["name"] for m in synced.container["volumeMounts"] if m["mountPath"] == sidecar_dir)
    assert {"name": volume, "mountPath": gateway_root, "readOnly": True} in vllm["volumeMounts"]
    versions = served_versions(catalog, model.name)
    for served, source in versions.items():
        path = gateway_view.adapter_path(served, gateway_root)
        assert path is not None and path.startswith(gateway_root.rstrip("/") + "/"), (served, path)
        on_disk = synced.adapters / path.removeprefix(gateway_root.rstrip("/") + "/")
        files = {p.name: p.read_bytes() for p in on_disk.iterdir()} if on_disk.is_dir() else {}
        assert set(files) == {tinylora.CONFIG_FILE, tinylora.WEIGHTS_FILE}, f"{served}: {path} holds {sorted(files)}"
        assert files == s3.objects(source), served
    print(f"{len(versions)} adapter versions where the gateway points vLLM: {sorted(versions)}")


async def _tokens(session: aiohttp.ClientSession, url: str, model: str) -> list[int]:
    """Greedy token ids (ignore_eos: a random adapter may end at once, and text may not tell them apart)."""
    body = {"model": model, "prompt": "Write one line about the sea.", "max_tokens": 8, "temperature": 0}
    body |= {"ignore_eos": True, "return_token_ids": True}
    async with session.post(url + "/v1/completions", json=body) as resp:
        reply = await resp.json()
    assert resp.status == 200, reply
    tokens = reply["choices"][0].get("token_ids")
    assert tokens and len(tokens) == 8, reply
    return list(tokens)


@pytest.mark.vllm
async def test_vllm_serves_an_adapter_version_loaded_from_the_synced_disk(
    synced: Pod,
    vllm_engine: str,
    catalog: fleet_catalog.Catalog,
    model: fleet_catalog.Model,
    gateway_view: gateway_catalog.Catalog,
) -> None:
    """The gateway's own loader (AdapterLoader, the path from the generated catalog) asks the session's
    real vLLM to load an adapter version from the synced directory, which stands for the engine's
    /adapters here; the engine then answers for that version with other tokens than the base model's.
    The engine serves the tiny model, not the catalogued base: vLLM's runtime load does not check the
    base an adapter names, only that its tensors fit."""
    view = gateway_view
    served = sorted(served_versions(catalog, model.name))[0]
    settings = Settings(upstreams=[], adapters=Adapters(root=str(synced.adapters)))
    metrics = GatewayMetrics()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        loader = AdapterLoader(settings, session, view, AdapterPlacement(view, metrics), metrics)
        endpoint = Endpoint(vllm_engine)
        try:
            assert await loader.prepare(endpoint, served, time.monotonic() + 60) is None
            loader.done(endpoint, served)
            async with session.get(vllm_engine + "/v1/models") as resp:
                listed = {m["id"]: m.get("root") for m in (await resp.json())["data"]}
            assert listed[served] == view.adapter_path(served, str(synced.adapters)), listed
            adapted, base = (
                await _tokens(session, vllm_engine, served),
                await _tokens(session, vllm_engine, "tiny-llama"),
            )
            assert adapted != base
        finally:
            # The session's engine goes on serving other tests: leave its adapters as they were.
            async with session.post(vllm_engine + "/v1/unload_lora_adapter", json={"lora_name": served}):
                pass
