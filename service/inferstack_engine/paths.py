"""Where the engine's pieces live, relative to the repository (overridable by environment)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_DIR = REPO / ".cache" / "models" / "tiny-llama"


def engine_python() -> str:
    """The engine venv's interpreter: ``INFERSTACK_ENGINE_PYTHON``, else ``<repo>/.venv-engine/bin/python``."""
    return os.environ.get("INFERSTACK_ENGINE_PYTHON") or str(REPO / ".venv-engine" / "bin" / "python")
