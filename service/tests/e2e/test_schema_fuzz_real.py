"""The schema fuzzer, once, through the gateway to a real vLLM: vLLM's own answers to bad input
(its 4xx bodies, its 5xx) must reach the client as OpenAI errors below 500.

A smaller run than the fake-engine one (``test_schema_fuzz``): every accepted body costs a real
generation on CPU. Same seed, so a failure reproduces with ``python -m service.tests.schema_fuzz``.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from inferstack_devstack import LiveStack

from .. import schema_fuzz

pytestmark = pytest.mark.vllm

SEED = int(os.environ.get("INFERSTACK_FUZZ_SEED", "20261202"))
CASES = int(os.environ.get("INFERSTACK_FUZZ_REAL_CASES", "300"))


async def test_mutated_bodies_through_real_vllm_never_get_a_5xx_or_a_non_openai_error(live_stack: LiveStack) -> None:
    async with asyncio.timeout(600):
        findings = await schema_fuzz.run(
            live_stack.gateway_url,
            SEED,
            CASES,
            live_stack.model,
            api_key=live_stack.api_key,
            max_tokens=8,
            concurrency=4,
            request_timeout=120,
        )
    assert not findings, schema_fuzz.report(findings, SEED)
