"""Rendered overlays, shared by every test here: `kubectl kustomize` runs once per overlay."""

from __future__ import annotations

import pytest

from .manifests import K8S, OVERLAYS, Obj, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Obj]]:
    return {name: render(K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objs(rendered: dict[str, list[Obj]], overlay: str) -> list[Obj]:
    return rendered[overlay]
