"""Prefix routing checked against real engines: two vLLM CPU replicas with prefix caching (and KV
events), the same shared-prefix request sequence under ``round_robin``, ``prefix_affinity`` and
``precise_prefix``, and vLLM's own ``vllm:prefix_cache_hits_total`` as the judge."""

from __future__ import annotations

import importlib.util
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inferstack_devstack import Stack, auth_env, dev_key, kv_events_endpoint, kv_events_env, start_gateway

from .test_real_vllm import scrape

pytestmark = pytest.mark.vllm


def _bench_words() -> tuple[str, ...]:
    """The vocabulary of the real-engine routing bench (bench/routing_real/workload.py): one list for both.

    Loaded by path under its own module name: bench/routing's tests import another ``workload``."""
    path = Path(__file__).resolve().parents[3] / "bench" / "routing_real" / "workload.py"
    spec = importlib.util.spec_from_file_location("routing_real_workload", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return tuple(module.WORDS)


WORDS = _bench_words()


def system_prompt(rng: random.Random) -> str:
    # ~450 words: a few of the CPU backend's 128-token KV blocks, well inside max_model_len 2048.
    return "You answer for the archive. " + " ".join(rng.choice(WORDS) for _ in range(450))


def prefix_hits(urls: list[str]) -> float:
    return sum(scrape(u).get("vllm:prefix_cache_hits_total", 0.0) for u in urls)


@pytest.fixture(scope="module")
def gateway(vllm_pair: list[str], run_dir: Path) -> Iterator[tuple[str, str]]:
    stack = Stack(run_dir=run_dir)
    try:
        keys = stack.run_dir / "routing-keys.yaml"
        key = dev_key(keys)
        kv = kv_events_env({url: kv_events_endpoint(run_dir, url) for url in vllm_pair})
        gw = start_gateway(
            stack, vllm_pair, env={**auth_env(keys), **kv, "INFERSTACK_TENANCY__CACHE__ENABLED": "false"}
        )
        yield gw.url, key
    finally:
        stack.stop()


def run_sequence(url: str, key: str, policy: str, seed: int) -> None:
    """5 system prompts, each asked 4 questions, interleaved as real traffic would be.

    An odd number of prompts over two replicas: round robin then sends each prompt to both replicas
    in turn, as it would with real, unaligned traffic (with an even number it would stick by accident).
    """
    rng = random.Random(seed)
    prompts = [system_prompt(rng) for _ in range(5)]
    with httpx.Client(
        base_url=url,
        timeout=120,
        headers={
            "authorization": f"Bearer {key}",
            "x-inferstack-routing-policy": policy,
        },
    ) as client:
        for turn in range(4):
            for system in prompts:
                resp = client.post(
                    "/v1/chat/completions",
                    json={
                        "model": "tiny-llama",
                        "max_tokens": 1,
                        "messages": [
                            {"role": "system", "content": system},
                            {"role": "user", "content": f"Question {turn}: {rng.choice(WORDS)}?"},
                        ],
                    },
                )
                assert resp.status_code == 200, resp.text


def test_prefix_policies_hit_the_engines_prefix_cache_more_than_round_robin(
    gateway: tuple[str, str], vllm_pair: list[str]
) -> None:
    url, key = gateway
    hits = {}
    # Different random prompts per phase, so no phase warms another's cache.
    for seed, policy in enumerate(("round_robin", "prefix_affinity", "precise_prefix"), start=1):
        before = prefix_hits(vllm_pair)
        run_sequence(url, key, policy, seed=seed)
        hits[policy] = prefix_hits(vllm_pair) - before
    print(f"vllm:prefix_cache_hits_total delta: {hits}")
    # Round robin pays two cold prefills per prompt (one per replica), prefix routing one: of 20
    # requests, about 10 hit under round robin and 15 under the other two.
    assert hits["prefix_affinity"] > hits["round_robin"] * 1.3
    assert hits["precise_prefix"] > hits["round_robin"] * 1.3
