"""Schema fuzzing: thousands of mutated bodies against a real gateway process in front of the fake engine.

Every answer must be below 500 and every error OpenAI-shaped (``schema_fuzz.verdict``). The gateway
runs as ``python -m inferstack serve`` (uvloop, httptools: the production server), with auth on and
a key with limits, so the fuzzed bodies also go through auth, limits, the cache key and accounting.
``INFERSTACK_FUZZ_SEED`` / ``INFERSTACK_FUZZ_CASES`` change the run; a failure prints the seed, the
smallest body of each kind of failure and the command that prints the whole case.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferstack.filters.keys import generate_key, hash_key
from inferstack_devstack import Stack, free_port, start_gateway

from . import schema_fuzz

SEED = int(os.environ.get("INFERSTACK_FUZZ_SEED", "20261202"))
CASES = int(os.environ.get("INFERSTACK_FUZZ_CASES", "2000"))


def key_file(path: Path) -> str:
    """A key with generous limits: the limit code runs for every body, 429s stay rare."""
    key = generate_key()
    path.write_text(
        "keys:\n"
        f"  - key_sha256: {hash_key(key)}\n"
        "    tenant: fuzz\n"
        "    rpm: 1000000\n"
        "    tpm: 1000000000\n"
        "    max_concurrency: 64\n"
        "    monthly_budget_usd: 1000000\n"
    )
    return key


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, str]]:
    stack = Stack(run_dir=tmp_path)
    try:
        port = free_port()
        engine = stack.start(
            "fake",
            [sys.executable, "-m", "inferstack_fake_engine", "--port", str(port), "--output-tokens", "3"],
            f"http://127.0.0.1:{port}",
        )
        stack.wait_ready(engine, "/health", 30)
        key = key_file(tmp_path / "keys.yaml")
        env = {"INFERSTACK_KEYS_FILE": str(tmp_path / "keys.yaml"), "INFERSTACK_LOG_LEVEL": "warning"}
        gw = start_gateway(stack, [engine.url], env=env, timeout=30)
        yield gw.url, key
        assert gw.process.poll() is None, f"the gateway died:\n{gw.log_tail()}"
    finally:
        stack.stop()


def test_the_fuzzer_is_deterministic_and_covers_every_mutation() -> None:
    first = [schema_fuzz.case(SEED, i, "m") for i in range(200)]
    again = [schema_fuzz.case(SEED, i, "m") for i in range(200)]
    assert [(c.body, c.content_type, c.headers) for c in first] == [(c.body, c.content_type, c.headers) for c in again]
    seen = {note.split(" ")[0] for c in first for note in c.mutations}
    assert {"type_swap", "number", "nesting", "huge_string", "unicode", "missing", "extra", "duplicate"} <= seen
    assert {"truncated", "document", "invalid", "content-type"} <= seen
    assert {c.kind for c in first} == set(schema_fuzz.PATHS)


def test_the_rule_tells_openai_errors_from_others() -> None:
    good = b'{"error": {"message": "m", "type": "invalid_request_error", "param": null, "code": null}}'
    assert schema_fuzz.verdict(400, "application/json", good) is None
    assert schema_fuzz.verdict(502, "application/json", good) == "status 502"
    assert schema_fuzz.verdict(404, "application/json", b'{"detail": "Not Found"}') is not None
    assert schema_fuzz.verdict(400, "text/plain", b"Bad Request") is not None
    assert schema_fuzz.verdict(400, "application/json", b'{"error": {"message": "m"}}') is not None
    vllms = b'{"error": {"message": "m", "type": "BadRequestError", "param": null, "code": 400}}'
    assert schema_fuzz.verdict(400, "application/json", vllms) == "status 400: param/code not string or null"
    stream = b'data: {"x": 1}\n\ndata: {"error": {"message": "m"}}\n\ndata: [DONE]\n\n'
    assert schema_fuzz.verdict(200, "text/event-stream", stream) is not None


async def test_mutated_bodies_never_get_a_5xx_or_a_non_openai_error(gateway: tuple[str, str]) -> None:
    url, key = gateway
    async with asyncio.timeout(300):
        findings = await schema_fuzz.run(url, SEED, CASES, "fake-model", api_key=key)
    assert not findings, schema_fuzz.report(findings, SEED)
