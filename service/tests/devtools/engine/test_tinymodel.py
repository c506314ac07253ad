"""The tiny model's directory: deterministic, cached, shaped for vLLM's CPU backend, with a working chat template.

Builds run in the engine venv (``scripts/engine-venv.sh``), as ``make up`` does; about 8 s each, two here.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from inferstack_engine import engine_python, tinymodel


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not Path(engine_python()).exists():
        pytest.fail("no engine venv: run `bash scripts/engine-venv.sh` (make test does)")
    return tinymodel.ensure(tmp_path_factory.mktemp("tiny") / "model")


def _engine_run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(Path(tinymodel.__file__).parents[1])}
    result = subprocess.run(
        [engine_python(), "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_a_matching_build_is_reused_and_a_rebuild_is_byte_identical(built: Path) -> None:
    weights = built / "model.safetensors"
    first_hash, first_mtime = tinymodel.tree_hash(built), weights.stat().st_mtime_ns
    assert tinymodel.is_built(built)
    tinymodel.ensure(built)
    assert weights.stat().st_mtime_ns == first_mtime  # reused, not rebuilt

    (built / tinymodel.RECIPE_FILE).write_text("an older recipe\n")
    assert not tinymodel.is_built(built)
    tinymodel.ensure(built)
    assert weights.stat().st_mtime_ns != first_mtime  # rebuilt...
    assert tinymodel.tree_hash(built) == first_hash  # ...to the same bytes (fixed seed, sorted JSON)


def test_files_and_shape_suit_vllm_on_cpu(built: Path) -> None:
    names = {p.name for p in built.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= names
    config = json.loads((built / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["head_dim"] == config["hidden_size"] // config["num_attention_heads"] == 64
    assert config["max_position_embeddings"] >= 2048
    vocab = json.loads((built / "tokenizer.json").read_text())["model"]["vocab"]
    assert 3000 <= len(vocab) <= config["vocab_size"]  # large enough that English stays ~4 chars a token


def test_chat_template_renders_and_tokenizes_compactly(built: Path) -> None:
    out = _engine_run(f"""
import json
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained({str(built)!r})
messages = [{{"role": "system", "content": "You are terse."}}, {{"role": "user", "content": " Hello there! "}}]
text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
prose = "The gateway sends each request to the replica that already holds its prefix in the cache."
print(json.dumps({{"text": text, "ids": tok(prose)["input_ids"], "prose": prose,
                  "decoded": tok.decode(tok(prose)["input_ids"], skip_special_tokens=True)}}))
""")
    result = json.loads(out)
    assert result["text"] == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello there!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert result["decoded"] == result["prose"]  # byte-level BPE round-trips
    assert len(result["prose"]) / len(result["ids"]) > 3  # chars per token, BOS included
