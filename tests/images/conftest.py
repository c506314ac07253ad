"""Session fixtures for the image tests, and a summary that says what was real here: which base the
images were built on (the official one or a stand-in), how long each build and run took, and why a
test was skipped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ._podman import DOCKER, Base, build, ensure_base, image_tag

NOTES = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[NOTES] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The run's per-test timeout counts only the test itself here, not the image builds its fixtures
    make: each build step has its own deadline (mmdebstrap 1,200 s, the gateway's build 900 s, the
    engine's 2,400 s). On a machine with no image yet the engine's build took 448 s, and with vLLM's
    start after it the engine test passed 600 s (session 20)."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(float(config.getini("timeout")), func_only=True))


@pytest.fixture(scope="session")
def note(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Add a line to the image tests' summary (printed after the run, pass or fail)."""
    return pytestconfig.stash[NOTES].append


@pytest.fixture(scope="session")
def python_base(note: Callable[[str], None]) -> Base:
    """The `python:3.11-slim-bookworm` base the gateway and CPU engine Dockerfiles start FROM."""
    base = ensure_base(DOCKER / "gateway" / "Dockerfile")
    note(f"base: {base.note}")
    return base


@pytest.fixture(scope="session")
def gateway_image(python_base: Base, note: Callable[[str], None]) -> str:
    """docker/gateway built with podman; the gateway and engine image tests both run it."""
    tag = image_tag("gateway")
    seconds = build(DOCKER / "gateway" / "Dockerfile", tag)
    note(f"gateway image {tag}: built in {seconds:.0f} s on {python_base.name}")
    return tag


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    notes = config.stash.get(NOTES, [])
    if notes:
        terminalreporter.section("images built and run here (tests/images)")
        for line in notes:
            terminalreporter.write_line(line)
