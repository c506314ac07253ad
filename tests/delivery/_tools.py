"""Paths and tool runners shared by the delivery tests (tools installed by scripts/install-delivery.sh)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
WORKFLOWS = REPO / ".github" / "workflows"
VENV_BIN = Path(sys.executable).parent
NODE_TOOLS = Path(__file__).resolve().parent / "node"
COMPOSE = Path(__file__).resolve().parent / ".tools" / "docker-compose"

INSTALL_HINT = "run scripts/install-delivery.sh"


def tool(name: str) -> str:
    """A linter from the venv (PyPI wheels) or PATH. Missing tools fail the test: they are part of it."""
    for candidate in (VENV_BIN / name, shutil.which(name)):
        if candidate and Path(candidate).exists():
            return str(candidate)
    pytest.fail(f"{name} is not installed: {INSTALL_HINT}")


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO, **kwargs)  # type: ignore[call-overload, no-any-return]


def dockerfiles() -> list[Path]:
    return sorted(DOCKER.glob("*/Dockerfile"))


def workflows() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))
