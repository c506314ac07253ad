"""LoRA adapters for the tiny model: random weights, built here because nothing may download them.

    python -m inferstack_engine.tinylora --out DIR sql-bot support-tone     # one directory per name
    build(DIR / "sql-bot", seed=seed_for("sql-bot"))                         # one adapter

Each adapter is what PEFT writes and vLLM loads: ``adapter_config.json`` (``peft_type`` LORA, rank 8,
``lora_alpha`` 16, targets ``q_proj`` and ``v_proj``) and ``adapter_model.safetensors`` holding
``lora_A`` (rank x in) and ``lora_B`` (out x rank) for both projections of every layer of the tiny
Llama (``tinymodel.LLAMA``). Unlike a freshly initialised PEFT adapter, ``lora_B`` is not zero: the
adapter must change the model's output, or a test could not tell it was applied. The weights are drawn
from ``random.Random(seed)``, so one seed always gives the same bytes; ``seed_for(name)`` derives a
seed from the adapter's name, so adapters named differently differ.

Stdlib only (the safetensors format is a JSON header and raw little-endian floats): the gateway's
environment builds adapters without torch, in milliseconds (about 60 KB each).
"""

from __future__ import annotations

import argparse
import array
import hashlib
import json
import random
import struct
import sys
from collections.abc import Iterable
from pathlib import Path

from .paths import building
from .tinymodel import LLAMA

RANK = 8
ALPHA = 16
TARGETS = ("q_proj", "v_proj")
# Standard deviation of both factors: with alpha / rank = 2, the adapter's delta is about as large as
# the base projection (initialised at 0.02), so greedy outputs differ from the base model's.
STD = 0.1
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"


def seed_for(name: str) -> int:
    """A stable seed from an adapter's name (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def shapes(rank: int = RANK, targets: Iterable[str] = TARGETS) -> dict[str, tuple[int, int]]:
    """Tensor name -> shape, in PEFT's naming (``base_model.model.`` + the module path)."""
    hidden, head_dim = int(LLAMA["hidden_size"]), int(LLAMA["head_dim"])
    out_features = {
        "q_proj": int(LLAMA["num_attention_heads"]) * head_dim,
        "k_proj": int(LLAMA["num_key_value_heads"]) * head_dim,
        "v_proj": int(LLAMA["num_key_value_heads"]) * head_dim,
        "o_proj": hidden,
    }
    result: dict[str, tuple[int, int]] = {}
    for layer in range(int(LLAMA["num_hidden_layers"])):
        for target in targets:
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{target}"
            result[f"{prefix}.lora_A.weight"] = (rank, hidden)
            result[f"{prefix}.lora_B.weight"] = (out_features[target], rank)
    return result


def safetensors_bytes(tensors: dict[str, tuple[tuple[int, int], array.array[float]]]) -> bytes:
    """float32 tensors in the safetensors layout: u64 header length, JSON header, data (sorted by name)."""
    header: dict[str, object] = {}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        shape, values = tensors[name]
        if sys.byteorder != "little":
            values = array.array("f", values)
            values.byteswap()
        data = values.tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format aligns the data to 8 bytes
    return struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks)


def adapter_config(rank: int, alpha: int, targets: Iterable[str], base_model: str) -> dict[str, object]:
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "target_modules": sorted(targets),
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
        # vLLM's filesystem resolver serves an adapter only for the base model named here (the
        # engine's --model value); the runtime load endpoint and --lora-modules ignore it.
        "base_model_name_or_path": base_model,
    }


def build(
    out: Path,
    *,
    seed: int,
    rank: int = RANK,
    alpha: int = ALPHA,
    targets: Iterable[str] = TARGETS,
    base_model: str = "tiny-llama",
) -> Path:
    """Write one adapter to ``out`` (replaced whole: built in a sibling directory, then renamed)."""
    out = Path(out).resolve()
    targets = tuple(targets)
    rng = random.Random(seed)
    tensors = {
        name: (shape, array.array("f", (rng.gauss(0.0, STD) for _ in range(shape[0] * shape[1]))))
        for name, shape in shapes(rank, targets).items()
    }
    with building(out) as tmp:
        (tmp / WEIGHTS_FILE).write_bytes(safetensors_bytes(tensors))
        config = adapter_config(rank, alpha, targets, base_model)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


def is_built(out: Path, base_model: str = "tiny-llama") -> bool:
    """A complete adapter for ``base_model`` of this module's shape (cheap: reads the config only)."""
    try:
        config = json.loads((Path(out) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (Path(out) / WEIGHTS_FILE).is_file() and config == adapter_config(RANK, ALPHA, TARGETS, base_model)


def ensure(root: Path, names: Iterable[str], base_model: str = "tiny-llama") -> dict[str, Path]:
    """``root/<name>`` for each name, built (seeded by the name) unless already there."""
    paths = {}
    for name in names:
        path = Path(root).resolve() / name
        if not is_built(path, base_model):
            build(path, seed=seed_for(name), base_model=base_model)
        paths[name] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inferstack_engine.tinylora", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="+", help="adapter names (each seeds its own weights)")
    parser.add_argument("--out", type=Path, required=True, help="parent directory: one adapter per name in it")
    parser.add_argument("--base-model", default="tiny-llama", help="base_model_name_or_path in adapter_config.json")
    args = parser.parse_args(argv)
    for name, path in ensure(args.out, args.names, args.base_model).items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
