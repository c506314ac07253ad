"""The local engine: a real vLLM on CPU serving a tiny model built on this machine.

- ``tinymodel``: builds the tiny Llama's directory (tokenizer, chat template, random weights), cached.
- ``vllm``: the argv + environment that start vLLM, the process, and the readiness wait.

Stdlib only at import time: the gateway's environment imports this package; torch, transformers and
vllm live in ``.venv-engine`` (``scripts/engine-venv.sh``). See ``docs/engine.md``.
"""

from __future__ import annotations

from pathlib import Path

from .paths import DEFAULT_MODEL_DIR, engine_python


def tinymodel_build(out: Path = DEFAULT_MODEL_DIR) -> Path:
    """The tiny model's directory, built (in the engine venv) only if missing or out of date."""
    from .tinymodel import ensure  # not at import time: `python -m inferstack_engine.tinymodel` runs it

    return ensure(out)


__all__ = ["DEFAULT_MODEL_DIR", "engine_python", "tinymodel_build"]
