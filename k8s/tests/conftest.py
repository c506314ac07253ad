"""Rendered overlays, shared by every test here: `kubectl kustomize` runs once per overlay."""

from __future__ import annotations

import pytest

from .manifests import K8S, OVERLAYS, PLATFORMS, Obj, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Obj]]:
    return {name: render(K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="session")
def platforms() -> dict[str, list[Obj]]:
    """compute_mode -> the rendered k8s/platform directory bootstrap.sh applies in that mode."""
    return {mode: render(K8S / "platform" / name) for mode, name in PLATFORMS.items()}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objs(rendered: dict[str, list[Obj]], overlay: str) -> list[Obj]:
    return rendered[overlay]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say what the bootstrap rehearsal was, whatever the verbosity."""
    ran = terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
    if any("test_bootstrap.py" in r.nodeid for r in ran):
        terminalreporter.write_line(
            "k8s/tests/test_bootstrap.py: k8s/bootstrap.sh and k8s/grafana.sh ran for real against FAKE "
            "terraform, aws, kubectl and helm (k8s/tests/shims.py); no cluster and no AWS account was touched."
        )
