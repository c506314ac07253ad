"""LoRA adapters for the tiny model: deterministic by seed, PEFT's layout, readable by safetensors.

Stdlib-only builder; the check that safetensors (the library vLLM loads them with) reads the file runs
in the engine venv. That vLLM applies them (output differs from the base) is service/tests/e2e/test_lora_real.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from inferstack_engine import engine_python, tinylora


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = tinylora.build(tmp_path / "a", seed=7)
    b = tinylora.build(tmp_path / "b", seed=7)
    c = tinylora.build(tmp_path / "c", seed=8)
    weights = tinylora.WEIGHTS_FILE
    assert (a / weights).read_bytes() == (b / weights).read_bytes()
    assert (a / weights).read_bytes() != (c / weights).read_bytes()
    assert tinylora.seed_for("sql-bot") == tinylora.seed_for("sql-bot") != tinylora.seed_for("support-tone")


def test_config_is_a_rank_8_q_v_lora_for_the_base(tmp_path: Path) -> None:
    out = tinylora.build(tmp_path / "x", seed=1, base_model="/models/tiny-llama")
    config = json.loads((out / tinylora.CONFIG_FILE).read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8 and config["lora_alpha"] == 16
    assert config["target_modules"] == ["q_proj", "v_proj"]
    assert config["base_model_name_or_path"] == "/models/tiny-llama"
    assert oct(out.stat().st_mode & 0o777) == "0o755"  # an engine running as another user reads it


def test_ensure_builds_missing_adapters_and_reuses_built_ones(tmp_path: Path) -> None:
    paths = tinylora.ensure(tmp_path, ["one", "two"])
    mtime = (paths["one"] / tinylora.WEIGHTS_FILE).stat().st_mtime_ns
    (paths["two"] / tinylora.WEIGHTS_FILE).unlink()  # half there: rebuilt
    again = tinylora.ensure(tmp_path, ["one", "two"])
    assert (again["one"] / tinylora.WEIGHTS_FILE).stat().st_mtime_ns == mtime
    assert (again["two"] / tinylora.WEIGHTS_FILE).is_file()


def test_safetensors_reads_the_shapes_peft_writes(tmp_path: Path) -> None:
    if not Path(engine_python()).exists():
        pytest.fail("no engine venv: run `bash scripts/engine-venv.sh` (make test does)")
    out = tinylora.build(tmp_path / "x", seed=3)
    code = (
        "import json, sys\n"
        "from safetensors.numpy import load_file\n"
        f"t = load_file({str(out / tinylora.WEIGHTS_FILE)!r})\n"
        "print(json.dumps({k: [list(v.shape), str(v.dtype), float(v.std())] for k, v in t.items()}))\n"
    )
    result = subprocess.run(
        [engine_python(), "-c", code], capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    tensors = json.loads(result.stdout)
    assert {k: tuple(v[0]) for k, v in tensors.items()} == tinylora.shapes()
    assert all(v[1] == "float32" and 0.08 < v[2] < 0.12 for v in tensors.values())  # B is not zero
    assert "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight" in tensors
