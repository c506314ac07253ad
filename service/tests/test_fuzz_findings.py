"""What the schema fuzzer found, each as its smallest body: a 4xx OpenAI error, never a 500.

Found by ``test_schema_fuzz`` (seed 20261202) on the gateway before issue 13's fixes; kept here as
regression tests so that each finding is named and fails alone. Fixed: numbers beyond 64 bits in the
cache key (filters/cache_key.py); nesting deeper than orjson writes or the key's normaliser recurses
is refused at validation (api/request.py, ``MAX_NESTING``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from inferstack_fake_engine import EngineConfig, running_engine

from . import schema_fuzz
from .gateway_harness import running_gateway


@pytest.fixture
async def gateway() -> AsyncIterator[str]:
    async with running_engine(EngineConfig()) as engine, running_gateway([engine]) as (url, _):
        yield url


def deep(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


FINDINGS = {
    # The response cache's key re-encodes the body: orjson reads 2**64 as a float, the key's
    # normaliser turns a whole float back into an int, and orjson cannot write ints beyond 64 bits.
    "cache key, integer beyond 64 bits": (
        "/v1/embeddings",
        b'{"model": "fake-model", "input": "hi", "dimensions": 18446744073709551616}',
    ),
    "cache key, 1e300 as a whole number": (
        "/v1/chat/completions",
        b'{"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "seed": 1, "top_p": 1e300}',
    ),
    # The key's normaliser recurses once per level: Python's recursion limit comes before orjson's.
    "cache key, 600 levels of nesting": (
        "/v1/embeddings",
        b'{"model": "fake-model", "input": "hi", "x": ' + deep(600) + b"}",
    ),
    # A stream's body is re-encoded to ask for usage: orjson writes at most 255 levels (it reads 1024).
    "stream re-encoding, 300 levels of nesting": (
        "/v1/chat/completions",
        b'{"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": true, "x": '
        + deep(300)
        + b"}",
    ),
}


@pytest.mark.parametrize("name", sorted(FINDINGS))
async def test_fuzzer_findings_get_a_4xx_openai_error(gateway: str, name: str) -> None:
    path, body = FINDINGS[name]
    async with httpx.AsyncClient(base_url=gateway) as client:
        resp = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert schema_fuzz.verdict(resp.status_code, resp.headers.get("content-type", ""), resp.content) is None, (
        resp.status_code,
        resp.text[:300],
    )
