"""docker/engine-gpu/entrypoint.sh picks the model source. vLLM itself is replaced by a stand-in
`python3` on PATH that records the arguments it was exec'd with."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from ._tools import DOCKER, run

ENTRYPOINT = DOCKER / "engine-gpu" / "entrypoint.sh"


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.json"
    script = bin_dir / "python3"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f"printf '%s\\0' \"$@\" | {sys.executable} -c 'import json,sys; "
        f'json.dump(sys.stdin.read().split("\\0")[:-1], open("{record}", "w"))\'\n'
    )
    script.chmod(0o755)
    return bin_dir


def _start(fake_python: Path, env: dict[str, str], *args: str) -> tuple[int, list[str] | None, str]:
    full_env = {"PATH": f"{fake_python}:{os.environ['PATH']}", **env}
    result = run(["bash", str(ENTRYPOINT), *args], env=full_env)
    record = fake_python.parent / "argv.json"
    argv = json.loads(record.read_text()) if record.exists() else None
    return result.returncode, argv, result.stderr


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_serves_from_the_mounted_cache_first(fake_python: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "models" / "llama-3-8b"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text("{}")
    env = {"MODEL_NAME": "llama-3-8b", "MODEL_CACHE_DIR": str(tmp_path / "models"), "MODEL_S3_URI": "s3://b/m"}
    code, argv, _ = _start(fake_python, env, "--max-model-len", "4096")
    assert code == 0 and argv is not None
    assert argv[:2] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert _flag(argv, "--model") == str(model_dir)
    assert "--load-format" not in argv
    assert _flag(argv, "--served-model-name") == "llama-3-8b"
    assert argv[-2:] == ["--max-model-len", "4096"], "extra arguments reach vLLM unchanged"


def test_every_engine_publishes_kv_events_with_deterministic_block_hashes(fake_python: Path, tmp_path: Path) -> None:
    """The contract the gateway's prefix routing relies on (issue 14): prefix caching with sha256_cbor
    block hashes, KV-cache events as ZMQ PUB on port 5557, topic `kv`."""
    code, argv, _ = _start(
        fake_python, {"MODEL_NAME": "m", "MODEL_CACHE_DIR": str(tmp_path), "MODEL_S3_URI": "s3://b/m"}
    )
    assert code == 0 and argv is not None
    assert "--enable-prefix-caching" in argv
    assert _flag(argv, "--prefix-caching-hash-algo") == "sha256_cbor"
    assert json.loads(_flag(argv, "--kv-events-config")) == {
        "enable_kv_cache_events": True,
        "publisher": "zmq",
        "endpoint": "tcp://*:5557",
        "topic": "kv",
    }


def test_streams_from_s3_when_the_cache_lacks_the_model(fake_python: Path, tmp_path: Path) -> None:
    env = {"MODEL_NAME": "m", "MODEL_CACHE_DIR": str(tmp_path), "MODEL_S3_URI": "s3://weights/m/", "PORT": "9000"}
    code, argv, _ = _start(fake_python, env)
    assert code == 0 and argv is not None
    assert _flag(argv, "--model") == "s3://weights/m/"
    assert _flag(argv, "--load-format") == "runai_streamer"
    assert _flag(argv, "--port") == "9000"


@pytest.mark.parametrize(
    ("env", "code", "message"),
    [
        ({"MODEL_NAME": "m"}, 66, "MODEL_S3_URI is not set"),
        ({"MODEL_NAME": "m", "MODEL_S3_URI": "https://example.invalid/m"}, 64, "must start with s3://"),
        ({}, 1, "MODEL_NAME must name the model"),
    ],
)
def test_refuses_without_a_usable_source(
    fake_python: Path, tmp_path: Path, env: dict[str, str], code: int, message: str
) -> None:
    got, argv, stderr = _start(fake_python, {"MODEL_CACHE_DIR": str(tmp_path), **env})
    assert got == code and message in stderr
    assert argv is None, "vLLM must not start"
