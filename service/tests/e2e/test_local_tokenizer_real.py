"""The gateway's own tokenizer gives a real vLLM's token ids, and its drift guard catches one that does not.

Against the session engine (the tiny model, Llama-3-style template): for chats (system prompt and
several turns, with and without the generation prompt, continuing the final message, text parts,
names, extra special tokens, template kwargs the template does not read) and completions (with and
without special tokens), the local ids must equal the engine's ``/tokenize`` answer, and the block
hashes computed from them must be the ones the engine publishes when it serves the request (so
``/tokenize`` is not merely agreeing with itself). Then a tokenizer file made wrong on purpose must be
caught by the guard on its first check and switched off, the engine's ids taking over.
"""

from __future__ import annotations

import json
import random
import shutil
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from prometheus_client import CollectorRegistry

import inferstack_devstack as devstack
from inferstack.config import KVEvents
from inferstack.kvcache.blocks import prompt_block_hashes
from inferstack.kvcache.local_tokenizer import LocalTokenizer
from inferstack.kvcache.service import KVRouting
from inferstack.kvcache.settings import LocalTokenizerSettings

from ..waiting import until
from .kv_engine import engine_ids, generate, live_index
from .test_real_vllm import scrape

pytestmark = pytest.mark.vllm

WORDS = ("river", "stone", "ledger", "harbour", "winter", "signal", "garden", "copper", "meadow", "lantern")
ODD = ("Über", "naïve", "東京", "🙂", "  ", "\n", "\t", "<|eot_id|>", "<|begin_of_text|>", "don't", "x=1;")


def text(rng: random.Random, words: int, odd: float = 0.0) -> str:
    pool = [rng.choice(ODD) if rng.random() < odd else rng.choice(WORDS) for _ in range(words)]
    return f"{uuid.uuid4()} " + " ".join(pool)


def cases(rng: random.Random) -> dict[str, tuple[str, dict[str, Any]]]:
    turns = [
        {"role": "system", "content": text(rng, 200)},
        {"role": "user", "content": text(rng, 60)},
        {"role": "assistant", "content": text(rng, 60)},
        {"role": "user", "content": text(rng, 60) + "  \n"},
    ]
    return {
        "chat, multi-turn, generation prompt": ("chat", {"messages": turns}),
        "chat, no generation prompt": ("chat", {"messages": turns, "add_generation_prompt": False}),
        "chat, continue the final message": (
            "chat",
            {
                "messages": [*turns, {"role": "assistant", "content": "The first word is"}],
                "add_generation_prompt": False,
                "continue_final_message": True,
            },
        ),
        "chat, text parts, names, special tokens in text": (
            "chat",
            {
                "messages": [
                    {"role": "system", "content": [{"type": "text", "text": text(rng, 150, 0.2)}]},
                    {
                        "role": "user",
                        "name": "ann",
                        "content": [{"type": "text", "text": text(rng, 40, 0.3)}, {"type": "text", "text": "next"}],
                    },
                ]
            },
        ),
        "chat, add_special_tokens, unread template kwargs": (
            "chat",
            {
                "messages": turns[:2],
                "add_special_tokens": True,
                "chat_template_kwargs": {"enable_thinking": False},
            },
        ),
        "completions": ("completions", {"prompt": text(rng, 400, 0.1)}),
        "completions without special tokens": (
            "completions",
            {"prompt": text(rng, 400, 0.1), "add_special_tokens": False},
        ),
    }


async def test_local_ids_are_the_engines_and_hash_to_its_published_blocks(vllm_engine: str, run_dir: Path) -> None:
    rng = random.Random(15)
    tok = LocalTokenizer.load(devstack.DEFAULT_MODEL_DIR)
    async with live_index(vllm_engine, run_dir, lambda: text(rng, 300)) as (session, index, block_size):
        for name, (kind, payload) in cases(rng).items():
            ours = tok.token_ids(payload, kind)
            assert ours is not None, f"{name}: refused"
            assert ours == await engine_ids(session, vllm_engine, kind, payload), name
            hashes = prompt_block_hashes(ours, block_size)
            assert len(hashes) >= 2, f"{name}: the prompt should span several {block_size}-token blocks"
            await generate(session, vllm_engine, kind, payload)
            await until(
                lambda hashes=hashes: index.match(hashes, [vllm_engine])[vllm_engine] == len(hashes),
                f"{name}: the engine to publish the {len(hashes)} blocks of the local ids",
                within=30.0,
            )


async def test_random_conversations_tokenize_as_the_engine_does(vllm_engine: str) -> None:
    rng = random.Random(16)
    tok = LocalTokenizer.load(devstack.DEFAULT_MODEL_DIR)
    async with aiohttp.ClientSession() as session:
        for _ in range(40):
            roles = ["user", "assistant"] * 3
            messages = [{"role": "system", "content": text(rng, rng.randint(0, 40), 0.3)}] + [
                {"role": r, "content": text(rng, rng.randint(0, 30), 0.3)} for r in roles[: rng.randint(1, 6)]
            ]
            payload: dict[str, Any] = {"messages": messages, "add_generation_prompt": rng.random() < 0.5}
            ours = tok.token_ids(payload, "chat")
            assert ours == await engine_ids(session, vllm_engine, "chat", payload), json.dumps(payload)[:300]


def wrong_copy(source: Path, target: Path) -> Path:
    """The tiny model's tokenizer files with two frequent tokens' ids swapped: it still loads."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "tokenizer_config.json", target)
    spec = json.loads((source / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    a, b = "Ġriver", "Ġstone"
    assert a in vocab and b in vocab, "the corpus should give these words tokens of their own"
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (target / "tokenizer.json").write_text(json.dumps(spec))
    return target


async def test_a_wrong_tokenizer_is_caught_and_switched_off(vllm_engine: str, tmp_path: Path) -> None:
    wrong = wrong_copy(devstack.DEFAULT_MODEL_DIR, tmp_path / "wrong")
    settings = KVEvents(
        enabled=True,
        local_tokenizer=LocalTokenizerSettings(dirs={"tiny-llama": str(wrong)}, check_first=3),
    )
    registry = CollectorRegistry()
    payload = {"messages": [{"role": "user", "content": "river stone river stone"}]}
    async with aiohttp.ClientSession() as session:
        kv = KVRouting(settings, session, registry)
        try:
            assert registry.get_sample_value("inferstack_kv_tokenizer_local", {"model": "tiny-llama"}) == 0
            truth = await engine_ids(session, vllm_engine, "chat", payload)
            assert kv.guard is not None
            local = await kv.guard.ids("tiny-llama", payload, "chat")
            assert local is not None and local.ids != truth  # the guard has something to catch
            for _ in range(3):  # probation: the engine's ids route, and the first one catches the drift
                assert await kv.token_ids("tiny-llama", payload, "chat", [vllm_engine]) == truth
            checks = {
                o: registry.get_sample_value(
                    "inferstack_kv_tokenizer_checks_total", {"model": "tiny-llama", "outcome": o}
                )
                for o in ("same", "differ", "failed")
            }
            assert checks == {"same": 0, "differ": 1, "failed": 0}  # off after the first: no more comparisons
            assert await kv.guard.ids("tiny-llama", payload, "chat") is None
            assert registry.get_sample_value("inferstack_kv_tokenizer_local", {"model": "tiny-llama"}) == 0
        finally:
            await kv.close()


async def test_the_right_tokenizer_passes_probation_and_then_answers_alone(vllm_engine: str) -> None:
    settings = KVEvents(
        enabled=True,
        local_tokenizer=LocalTokenizerSettings(
            dirs={"tiny-llama": str(devstack.DEFAULT_MODEL_DIR)}, check_first=2, check_fraction=0
        ),
    )
    registry = CollectorRegistry()
    rng = random.Random(17)
    async with aiohttp.ClientSession() as session:
        kv = KVRouting(settings, session, registry)
        try:
            for _ in range(2):
                payload = {"prompt": text(rng, 50)}
                assert await kv.token_ids("tiny-llama", payload, "completions", [vllm_engine]) == await engine_ids(
                    session, vllm_engine, "completions", payload
                )
            assert registry.get_sample_value("inferstack_kv_tokenizer_local", {"model": "tiny-llama"}) == 1
            calls = registry.get_sample_value("inferstack_kv_tokenize_seconds_count", {"outcome": "ok"})
            # Past probation no engine is asked: not even a dead one.
            payload = {"prompt": text(rng, 50)}
            assert await kv.token_ids("tiny-llama", payload, "completions", ["http://127.0.0.1:9"]) is not None
            assert registry.get_sample_value("inferstack_kv_tokenize_seconds_count", {"outcome": "ok"}) == calls
        finally:
            await kv.close()


def test_a_gateway_configured_as_make_up_does_routes_chats_by_its_own_ids(vllm_engine: str, run_dir: Path) -> None:
    """Settings from the environment as ``make up`` writes them, the router's path, the exported metrics."""
    stack = devstack.Stack(run_dir=run_dir)
    try:
        env = devstack.local_tokenizer_env(vllm_engine, run_dir, {"tiny-llama": str(devstack.DEFAULT_MODEL_DIR)})
        gateway = devstack.start_gateway(stack, [vllm_engine], env=env)
        rng = random.Random(18)
        with httpx.Client(base_url=gateway.url, timeout=120) as client:
            for _ in range(5):
                messages = [{"role": "system", "content": text(rng, 100)}, {"role": "user", "content": "Which?"}]
                resp = client.post(
                    "/v1/chat/completions",
                    headers={"x-inferstack-routing-policy": "precise_prefix"},
                    json={"model": "tiny-llama", "max_tokens": 1, "messages": messages},
                )
                assert resp.status_code == 200, resp.text
        metrics = scrape(gateway.admin_url)
        assert metrics["inferstack_kv_tokenizer_checks_total"] == 2  # probation only (no background samples)
        assert metrics["inferstack_kv_tokenizer_local"] == 1
        assert metrics["inferstack_kv_local_tokenize_seconds_count"] == 5
        assert metrics["inferstack_kv_tokenize_seconds_count"] == 2  # /tokenize only while on probation
    finally:
        stack.stop()
