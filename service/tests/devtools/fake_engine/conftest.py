from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from inferstack_fake_engine import EngineConfig, running_engine


@pytest.fixture
def config() -> EngineConfig:
    return EngineConfig(models=("fake-model", "alias"))


@pytest.fixture
async def engine(config: EngineConfig) -> AsyncIterator[str]:
    async with running_engine(config) as url:
        yield url


@pytest.fixture
async def client(engine: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=engine, timeout=5.0) as c:
        yield c


def sse_events(raw: bytes) -> list[Any]:
    """Split an SSE body into decoded ``data:`` payloads; ``[DONE]`` stays a string."""
    assert raw.endswith(b"\n\n"), raw[-40:]
    out: list[Any] = []
    for event in raw.split(b"\n\n")[:-1]:
        assert event.startswith(b"data: "), event
        data = event[len(b"data: ") :]
        out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return out
