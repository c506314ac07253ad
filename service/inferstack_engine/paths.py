"""Where the engine's pieces live, relative to the repository (overridable by environment)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_DIR = REPO / ".cache" / "models" / "tiny-llama"


def engine_python() -> str:
    """The engine venv's interpreter: ``INFERSTACK_ENGINE_PYTHON``, else ``<repo>/.venv-engine/bin/python``."""
    return os.environ.get("INFERSTACK_ENGINE_PYTHON") or str(REPO / ".venv-engine" / "bin" / "python")


@contextlib.contextmanager
def building(out: Path) -> Iterator[Path]:
    """A temporary sibling of ``out`` to build into; once the block completes it replaces ``out`` whole,
    so a half-written directory never gets served. Made readable by all: mkdtemp and safetensors create
    owner-only files, and the engine may run as another user (a container)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        for path in tmp.iterdir():
            path.chmod(0o644)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
