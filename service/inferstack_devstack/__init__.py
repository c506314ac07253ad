"""``make up``: the local stack in the foreground — a real vLLM on CPU, the gateway, and Prometheus.

    python -m inferstack_devstack             # what `make up` runs
    MODEL=/path/or/hf-id make up             # serve another model (a local dir, or an id in the HF cache)
    UPSTREAMS=http://host:8000 make up       # put the gateway in front of an existing vLLM instead

Every process runs in its own process group with its log under ``.cache/devstack/``; Ctrl-C (or
SIGTERM) stops all of them, gateway first so it drains. The same ``Stack`` starts the stack for the
end-to-end tests (see the root ``conftest.py``).

Stdlib only: this module runs in the gateway's environment and never imports torch or vllm.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from inferstack_engine.vllm import EngineOptions
from inferstack_engine.vllm import stop as stop_process_group

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
RUN_DIR = CACHE / "devstack"
DEFAULT_MODEL_DIR = CACHE / "models" / "tiny-llama"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_free(port: int, what: str) -> None:
    """Fail early and clearly: a readiness probe on a taken port would be answered by someone else."""
    with socket.socket() as s:
        # As the servers themselves bind: a port held only by TIME_WAIT connections is free to them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise RuntimeError(
                f"port {port} is already in use; {what} needs it (choose another with the"
                f" variable shown in the README, or stop what holds it)"
            ) from None


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, b""


@dataclass(frozen=True)
class LiveStack:
    """What the end-to-end tests get from the ``live_stack`` fixture (root conftest.py)."""

    gateway_url: str
    gateway_admin_url: str  # /metrics and /admin/*
    vllm_url: str
    model: str
    api_key: str | None


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str
    admin_url: str = ""  # the gateway's admin listener (/metrics, /admin/*)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Stack:
    """Processes started together and stopped together, newest first."""

    run_dir: Path = RUN_DIR
    services: list[Service] = field(default_factory=list)
    progress: Callable[[str], None] = lambda message: None

    def start(self, name: str, argv: list[str], url: str, env: dict[str, str] | None = None) -> Service:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.run_dir / f"{name}.log"
        log_file = log_path.open("wb")
        process = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            cwd=REPO,
        )
        log_file.close()
        service = Service(name, process, log_path, url)
        self.services.append(service)
        return service

    def wait_ready(
        self,
        service: Service,
        path: str,
        timeout: float,
        want: Callable[[bytes], bool] | None = None,
    ) -> None:
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise RuntimeError(
                    f"{service.name} exited with {service.process.returncode} while starting; "
                    f"last lines of {service.log_path}:\n{service.log_tail()}"
                )
            status, body = http_get(service.url + path)
            if status == 200 and (want is None or want(body)):
                self.progress(f"{service.name} ready after {time.monotonic() - started:.0f} s")
                return
            self.progress(f"waiting for {service.name} ({time.monotonic() - started:.0f} s)")
            time.sleep(0.5)
        raise RuntimeError(f"{service.name} not ready after {timeout:.0f} s; last lines:\n{service.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        for service in reversed(self.services):
            stop_process_group(service.process, timeout)
        self.services.clear()


# -- the three pieces -------------------------------------------------------------------------------


def kv_events_endpoint(run_dir: Path, engine_url: str) -> str:
    """Where a local engine publishes its KV-cache events: a socket file, so loopback only and no port."""
    return f"ipc://{run_dir}/kv-{engine_url.rsplit(':', 1)[-1]}.ipc"


def kv_events_env(endpoints: dict[str, str], tokenizer_dirs: dict[str, str] | None = None) -> dict[str, str]:
    """Gateway settings that subscribe to these engines' KV events (engine URL -> ZMQ endpoint); with
    ``tokenizer_dirs`` (model name -> its directory) the gateway tokenizes those models itself."""
    env = {"INFERSTACK_KV_EVENTS__ENABLED": "true", "INFERSTACK_KV_EVENTS__ENDPOINTS": json.dumps(endpoints)}
    if tokenizer_dirs:
        env["INFERSTACK_KV_EVENTS__LOCAL_TOKENIZER__DIRS"] = json.dumps(tokenizer_dirs)
    return env


def local_tokenizer_env(engine_url: str, run_dir: Path, tokenizer_dirs: dict[str, str]) -> dict[str, str]:
    """A gateway in front of one local engine, tokenizing these models itself after 2 checks against the
    engine and never again (no background samples), auth and the response cache off: what the tests of
    the local tokenizer's path through a real gateway start."""
    return {
        "INFERSTACK_AUTH_ENABLED": "false",
        "INFERSTACK_TENANCY__CACHE__ENABLED": "false",
        "INFERSTACK_KV_EVENTS__LOCAL_TOKENIZER__CHECK_FIRST": "2",
        "INFERSTACK_KV_EVENTS__LOCAL_TOKENIZER__CHECK_FRACTION": "0",
        **kv_events_env({engine_url: kv_events_endpoint(run_dir, engine_url)}, tokenizer_dirs),
    }


def launch_engine(
    stack: Stack,
    model: str,
    served_name: str,
    port: int | None = None,
    options: EngineOptions | None = None,
    env: dict[str, str] | None = None,
    kv_events: bool = True,
) -> Service:
    """Start a real vLLM (the engine venv) serving ``model`` without waiting for it; with ``kv_events`` it
    publishes KV events on ``kv_events_endpoint``. ``options`` (kv_events_endpoint aside) size the engine."""
    from inferstack_engine import vllm

    port = port or free_port()
    ensure_free(port, "vLLM (ENGINE_PORT)")
    url = f"http://127.0.0.1:{port}"
    stack.run_dir.mkdir(parents=True, exist_ok=True)
    endpoint = kv_events_endpoint(stack.run_dir, url) if kv_events else None
    options = replace(options or EngineOptions(), kv_events_endpoint=endpoint)
    argv, engine_env = vllm.command(model, port=port, served_name=served_name, options=options)
    return stack.start(f"vllm-{port}", argv, url, {**engine_env, **(env or {})})


def wait_engine(stack: Stack, service: Service, served_name: str, timeout: float = 600.0) -> Service:
    """Wait until the engine's ``/v1/models`` lists ``served_name``."""
    stack.wait_ready(service, "/v1/models", timeout, lambda body: served_name.encode() in body)
    return service


def start_engine(
    stack: Stack,
    model: str,
    served_name: str,
    port: int | None = None,
    timeout: float = 600.0,
    options: EngineOptions | None = None,
    env: dict[str, str] | None = None,
) -> Service:
    """``launch_engine``, then wait until it answers ``/v1/models``."""
    service = launch_engine(stack, model, served_name, port=port, options=options, env=env)
    return wait_engine(stack, service, served_name, timeout)


def start_gateway(
    stack: Stack,
    upstreams: list[str],
    port: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    admin_port: int | None = None,
) -> Service:
    port = port or free_port()
    ensure_free(port, "the gateway (GATEWAY_PORT)")
    admin_port = admin_port or free_port()
    ensure_free(admin_port, "the gateway's admin listener (GATEWAY_ADMIN_PORT)")
    gateway_env = {
        "INFERSTACK_HOST": "127.0.0.1",
        "INFERSTACK_PORT": str(port),
        "INFERSTACK_ADMIN_PORT": str(admin_port),
        "INFERSTACK_UPSTREAMS": ",".join(upstreams),
        "INFERSTACK_HEALTH__INTERVAL": "2",
        **(env or {}),
    }
    argv = [sys.executable, "-m", "inferstack", "serve"]
    service = stack.start(f"gateway-{port}", argv, f"http://127.0.0.1:{port}", gateway_env)
    service.admin_url = f"http://127.0.0.1:{admin_port}"
    stack.wait_ready(service, "/readyz", timeout)
    return service


def prometheus_config(targets: dict[str, list[str]], rule_files: list[str], interval: str = "5s") -> str:
    """A Prometheus config scraping each job's ``host:port`` targets (JSON is valid YAML)."""
    return json.dumps(
        {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": rule_files,
            "scrape_configs": [
                # The dashboards' namespace variable reads this label (Kubernetes adds it in a cluster).
                {"job_name": job, "static_configs": [{"targets": hosts, "labels": {"namespace": "inferstack"}}]}
                for job, hosts in targets.items()
            ],
        },
        indent=2,
    )


def rule_files() -> list[str]:
    rules = REPO / "observability" / "rules"
    return sorted(str(p) for p in rules.glob("*.yaml")) if rules.is_dir() else []


def start_prometheus(
    stack: Stack, targets: dict[str, list[str]], port: int | None = None, interval: str = "5s", timeout: float = 60.0
) -> Service | None:
    binary = shutil.which("prometheus")
    if binary is None:
        stack.progress("prometheus not installed: skipping it (scripts/install-observability.sh installs it)")
        return None
    port = port or free_port()
    ensure_free(port, "Prometheus (PROMETHEUS_PORT)")
    data = stack.run_dir / f"prometheus-{port}"
    data.mkdir(parents=True, exist_ok=True)
    config = data / "prometheus.yml"
    config.write_text(prometheus_config(targets, rule_files(), interval))
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    service = stack.start(f"prometheus-{port}", argv, f"http://127.0.0.1:{port}")
    stack.wait_ready(service, "/-/ready", timeout)
    return service


def _host(url: str) -> str:
    return url.split("://", 1)[1].rstrip("/")


# -- make up ------------------------------------------------------------------------------------------


def _model_source() -> tuple[str, str]:
    """What to serve: ``MODEL`` (a local dir or model id), else the generated tiny model."""
    model = os.environ.get("MODEL", "").strip()
    if model:
        path = Path(model).expanduser()
        return (str(path.resolve()) if path.exists() else model), os.environ.get("SERVED_NAME", path.name or model)
    from inferstack_engine import tinymodel_build

    tinymodel_build(DEFAULT_MODEL_DIR)
    return str(DEFAULT_MODEL_DIR), "tiny-llama"


class _Progress:
    """One status line that rewrites itself on a terminal; plain lines, at most every 10 s, in a log."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._last = ""
        self._last_at = 0.0

    def __call__(self, message: str) -> None:
        if message == self._last:
            return
        waiting = message.startswith("waiting")
        if self._tty:
            sys.stderr.write(f"\r\033[K[inferstack] {message}")
        elif not waiting or time.monotonic() - self._last_at >= 10:
            sys.stderr.write(f"[inferstack] {message}\n")
            self._last_at = time.monotonic()
        self._last = message
        sys.stderr.flush()

    def clear(self) -> None:
        if self._tty:
            sys.stderr.write("\r\033[K")


def _banner(
    gateway: str, admin: str, model: str, prometheus: str | None, key: str | None, local: dict[str, object] | None
) -> str:
    """What is up and how to try it; ``local`` is the local fleet's catalog (None for MODEL=/UPSTREAMS=)."""
    auth = f' -H "Authorization: Bearer {key}"' if key else ""
    api_key = key or "unused"
    lines = [
        "",
        "inferstack is up. Press Ctrl-C to stop everything.",
        f"  gateway     {gateway}   (OpenAI-compatible: {gateway}/v1)",
        f"  metrics     {admin}/metrics   (admin listener: metrics and {admin}/admin/usage, never public)",
    ]
    if prometheus:
        lines.append(f"  prometheus  {prometheus}")
    if local is not None:
        from .fleet import summary

        lines += summary(local)
    lines += [
        "",
        "Try it:",
        f"  curl -N {gateway}/v1/chat/completions{auth} -H 'Content-Type: application/json' \\",
        f'    -d \'{{"model": "{model}", "stream": true, "max_tokens": 16, '
        '"messages": [{"role": "user", "content": "Hello!"}]}\'',
        "",
        "  python - <<'EOF'",
        "  from openai import OpenAI",
        f'  client = OpenAI(base_url="{gateway}/v1", api_key="{api_key}")',
    ]
    if local is not None:
        from .fleet import try_lines

        lines += try_lines(local)
    else:
        lines += [
            f'  reply = client.chat.completions.create(model="{model}", max_tokens=16,',
            '      messages=[{"role": "user", "content": "Hello!"}])',
            "  print(reply.choices[0].message.content, reply.usage)",
        ]
    lines += ["  EOF", ""]
    return "\n".join(lines)


@contextlib.contextmanager
def signals_stop() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so the ``finally`` blocks that stop the
    children (each in a session of its own, out of reach of a signal to ours) run on either."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_engines(stack: Stack, gateway_env: dict[str, str]) -> tuple[list[str], str, dict[str, Any] | None]:
    """The engines of ``make up``: ``MODEL`` alone, or the local fleet (the tiny model with LoRA adapters,
    and with ``EMBED=1`` a tiny embedding model), started in parallel. Returns the upstreams, the
    chat model's name and the local fleet's catalog (written for the gateway; None for ``MODEL``)."""
    # The engine's environment is only needed when we start the engine ourselves.
    subprocess.run(["bash", str(REPO / "scripts" / "engine-venv.sh")], check=True)
    model, model_name = _model_source()
    engine_port = int(os.environ.get("ENGINE_PORT", "8000"))
    if os.environ.get("MODEL", "").strip():
        stack.progress(f"starting vLLM for {model_name} (about 40 s on CPU)")
        engine = start_engine(stack, model, model_name, port=engine_port)
        files = {model_name: model} if (Path(model) / "tokenizer.json").exists() else None  # a hub id: none
        gateway_env.update(kv_events_env({engine.url: kv_events_endpoint(stack.run_dir, engine.url)}, files))
        return [engine.url], model_name, None
    from .fleet import EMBED, LocalFleet

    local = LocalFleet(CACHE / "adapters" / model_name, embed=os.environ.get("EMBED", "0") == "1")
    options, lora_env = local.lora_options()
    also = f" and {EMBED}" if local.embed else ""
    stack.progress(f"starting vLLM for {model_name} with LoRA adapters{also} (about 60 s on CPU)")
    engine = launch_engine(stack, model, model_name, port=engine_port, options=options, env=lora_env)
    embed = None
    if local.embed:
        embed_port = int(os.environ.get("EMBED_ENGINE_PORT", "8001"))
        embed = launch_engine(stack, model, EMBED, port=embed_port, options=local.embed_options(), kv_events=False)
    wait_engine(stack, engine, model_name)
    if embed is not None:
        wait_engine(stack, embed, EMBED)
    catalog = local.catalog()
    gateway_env.update(kv_events_env({engine.url: kv_events_endpoint(stack.run_dir, engine.url)}, {model_name: model}))
    gateway_env["INFERSTACK_CATALOG_FILE"] = str(local.write_catalog(stack.run_dir / "catalog.json"))
    return [engine.url] + ([embed.url] if embed else []), model_name, catalog


def main() -> int:
    say = _Progress()
    stack = Stack(progress=say)
    gateway_port = int(os.environ.get("GATEWAY_PORT", "8080"))
    admin_port = int(os.environ.get("GATEWAY_ADMIN_PORT", "8081"))
    with signals_stop():
        try:
            upstreams = [u.strip() for u in os.environ.get("UPSTREAMS", "").split(",") if u.strip()]
            model_name = None
            local = None
            gateway_env = auth_env(stack.run_dir / "dev-keys.yaml")
            if not upstreams:
                upstreams, model_name, local = _start_engines(stack, gateway_env)
            key = dev_key(stack.run_dir / "dev-keys.yaml", plain=DEV_KEY_FILE)
            gateway = start_gateway(stack, upstreams, port=gateway_port, env=gateway_env, admin_port=admin_port)
            if model_name is None:
                _, body = http_get(gateway.url + "/v1/models")
                ids = [m["id"] for m in json.loads(body or b"{}").get("data", [])]
                model_name = ids[0] if ids else "<model>"
            prometheus = start_prometheus(
                stack,
                {"inferstack-gateway": [_host(gateway.admin_url)], "vllm": [_host(u) for u in upstreams]},
                port=int(os.environ.get("PROMETHEUS_PORT", "9090")),
            )
            say.clear()
            banner = _banner(
                gateway.url, gateway.admin_url, model_name, prometheus.url if prometheus else None, key, local
            )
            print(banner, flush=True)
            while all(s.process.poll() is None for s in stack.services):
                time.sleep(0.5)
            dead = next(s for s in stack.services if s.process.poll() is not None)
            print(f"\n{dead.name} exited ({dead.process.returncode}); last lines:\n{dead.log_tail()}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nstopping…", file=sys.stderr)
            return 0
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"\n{exc}", file=sys.stderr)
            return 1
        finally:
            stack.stop()


DEV_KEY_FILE = RUN_DIR / "dev-key.txt"
"""The running ``make up``'s development key in plain text (mode 0600): ``make loadtest`` reads it."""


def dev_key(keys_file: Path, plain: Path | None = None) -> str:
    """Local auth stays on: a fresh unlimited development key, its hash written to ``keys_file``."""
    from inferstack.filters import write_dev_keyfile

    key = write_dev_keyfile(keys_file)
    if plain is not None:
        fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
    return key


def auth_env(keys_file: Path) -> dict[str, str]:
    return {"INFERSTACK_AUTH_ENABLED": "true", "INFERSTACK_KEYS_FILE": str(keys_file)}
