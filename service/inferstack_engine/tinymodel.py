"""The tiny model: a real Hugging Face model directory, built here because nothing may download weights.

    PYTHONPATH=service .venv-engine/bin/python -m inferstack_engine.tinymodel --out DIR
    python -m inferstack_engine.tinymodel            # from the gateway venv: runs the build in .venv-engine

What it builds (a few seconds, deterministic, ~6 MB):
- ``tokenizer.json``: a byte-level BPE trained with ``tokenizers`` on ``corpus.txt`` (shipped next to this
  file), Llama-3-style special tokens, BOS added by the post-processor;
- ``tokenizer_config.json`` with a Llama-3-style chat template;
- ``config.json`` + ``model.safetensors``: a randomly initialised 2-layer Llama, head_dim 64 (vLLM's CPU
  attention rejects 16), bfloat16, fixed seed; ``generation_config.json``.
The text it generates is gibberish; tokenisation, chat templating, prefix caching, batching, streaming
and metrics are the real vLLM paths.

A ``.recipe`` file in the directory holds a hash of the recipe (parameters, corpus, this source). A build
whose hash matches is reused; anything else rebuilds into a temporary directory that replaces the old one
only once complete, so a half-written model never gets served.

Only the stdlib is imported at module level: the gateway's environment (no torch) imports this module
to check the cache and to start the build in the engine's environment.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .paths import DEFAULT_MODEL_DIR, building, engine_python

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus.txt"
RECIPE_FILE = ".recipe"

SEED = 1234
VOCAB_SIZE = 4096  # trained size is at most this; the corpus decides how many merges exist
MAX_MODEL_LEN = 2048
BOS, EOS, EOT, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|pad|>"
HEADER_START, HEADER_END = "<|start_header_id|>", "<|end_header_id|>"
SPECIAL_TOKENS = [BOS, EOS, HEADER_START, HEADER_END, EOT, PAD]

# Llama 3's shape of template: vLLM tokenises the rendered chat without adding special tokens, so the
# template itself starts with BOS. Content parts (OpenAI's list form) arrive flattened to text by vLLM.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{{ (message['content'] | trim) + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

LLAMA = {
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,  # head_dim = 256 / 4 = 64
    "num_key_value_heads": 2,  # grouped-query attention, like the real Llamas
    "head_dim": 64,
    "max_position_embeddings": MAX_MODEL_LEN,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
}


def recipe_hash() -> str:
    """Changes whenever the built files could change: parameters, corpus, or this module's code."""
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {
                "seed": SEED,
                "vocab": VOCAB_SIZE,
                "max_len": MAX_MODEL_LEN,
                "llama": LLAMA,
                "template": CHAT_TEMPLATE,
                "dtype": "bfloat16",
            },
            sort_keys=True,
        ).encode()
    )
    h.update(CORPUS.read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()


def is_built(out: Path) -> bool:
    try:
        return (out / RECIPE_FILE).read_text().strip() == recipe_hash()
    except OSError:
        return False


def tree_hash(out: Path) -> str:
    """Hash of every file's name and bytes: equal for two builds of the same recipe."""
    h = hashlib.sha256()
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(out)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def ensure(out: Path = DEFAULT_MODEL_DIR, python: str | None = None, timeout: float = 300.0) -> Path:
    """Return ``out`` holding a build of the current recipe, building it only when needed.

    Builds in this process when torch and transformers are importable (the engine venv), otherwise in
    a subprocess of the engine venv's Python (``python`` or ``paths.engine_python()``).
    """
    out = Path(out).resolve()
    if is_built(out):
        return out
    if python is None and all(importlib.util.find_spec(m) for m in ("torch", "tokenizers", "transformers")):
        build(out)
        return out
    if python is None:
        python = engine_python()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [python, "-m", "inferstack_engine.tinymodel", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0 or not is_built(out):
        raise RuntimeError(
            f"building the tiny model with {python} failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    return out


def build(out: Path) -> None:
    """Build into a temporary sibling directory, then swap it in (needs torch, tokenizers, transformers)."""
    out = Path(out).resolve()
    with building(out) as tmp:
        tokenizer = _train_tokenizer()
        tokenizer.save(str(tmp / "tokenizer.json"))
        vocab = tokenizer.get_vocab_size()
        ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
        _write_json(
            tmp / "tokenizer_config.json",
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": BOS,
                "eos_token": EOT,
                "pad_token": PAD,
                "model_max_length": MAX_MODEL_LEN,
                "clean_up_tokenization_spaces": False,
                "chat_template": CHAT_TEMPLATE,
            },
        )
        _save_model(tmp, vocab, ids)
        (tmp / RECIPE_FILE).write_text(recipe_hash() + "\n")


def _train_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        # min_frequency 1: the corpus is small, and every merge it allows shortens the token count
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes: no unknown tokens
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.read_text(encoding="utf-8").splitlines(keepends=True), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A $B",
        special_tokens=[(BOS, tokenizer.token_to_id(BOS))],
    )
    return tokenizer


def _save_model(out: Path, vocab: int, ids: dict[str, int]) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=-(-vocab // 64) * 64,  # padded to a multiple of 64, as real checkpoints are
        bos_token_id=ids[BOS],
        eos_token_id=[ids[EOT], ids[EOS]],
        pad_token_id=ids[PAD],
        dtype="bfloat16",
        **LLAMA,
    )
    # Initialised in float32, stored in bfloat16: vLLM on x86 CPUs serves float32 checkpoints in bfloat16
    # anyway (with a warning per tensor), and the file is half the size.
    model = LlamaForCausalLM(config).eval().to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(
        bos_token_id=ids[BOS],
        eos_token_id=[ids[EOT], ids[EOS]],
        pad_token_id=ids[PAD],
    ).save_pretrained(out)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inferstack_engine.tinymodel", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_MODEL_DIR, help=f"model directory (default {DEFAULT_MODEL_DIR})"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when the recipe matches")
    args = parser.parse_args(argv)
    if args.force and args.out.exists():
        shutil.rmtree(args.out)
    out = ensure(args.out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
