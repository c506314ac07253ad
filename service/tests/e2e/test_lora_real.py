"""Models, aliases and LoRA adapters through the gateway to a real vLLM, with the ``openai`` client.

The session engine (root conftest.py) runs as ``make up`` runs it: two adapter slots, ``sql-bot@v1`` and
``support-tone@v1`` registered at start, runtime loading allowed; the gateway here reads ``make up``'s
local catalog (``inferstack_devstack.fleet``). Greedy decoding (temperature 0) makes outputs comparable.
About 10 s once the engine is up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from inferstack_devstack import Stack, auth_env, dev_key, start_gateway
from inferstack_devstack.fleet import BASE, LocalFleet
from inferstack_engine import tinylora

pytestmark = pytest.mark.vllm

PROMPT = [{"role": "user", "content": "Write one line about the sea."}]


@pytest.fixture(scope="module")
def client(vllm_engine: str, local_fleet: LocalFleet, run_dir: Path) -> Iterator[openai.OpenAI]:
    stack = Stack(run_dir=run_dir)
    try:
        keys = run_dir / "lora-keys.yaml"
        key = dev_key(keys)
        catalog = local_fleet.write_catalog(run_dir / "lora-catalog.json")
        gateway = start_gateway(stack, [vllm_engine], env={**auth_env(keys), "INFERSTACK_CATALOG_FILE": str(catalog)})
        yield openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=60)
    finally:
        stack.stop()


def answer(client: openai.OpenAI, model: str) -> tuple[int, ...]:
    """The generated token ids (vLLM's ``return_token_ids``): a random adapter may produce partial UTF-8
    bytes that decode to an empty string, so text cannot tell adapters apart; ignore_eos: nor can an
    answer that ends at once."""
    reply = client.chat.completions.create(
        model=model,
        messages=PROMPT,  # type: ignore[arg-type]
        max_tokens=8,
        temperature=0,
        extra_body={"ignore_eos": True, "return_token_ids": True},
    )
    token_ids = (reply.choices[0].model_extra or {}).get("token_ids")
    assert token_ids and len(token_ids) == 8, reply
    return tuple(token_ids)


def engine_requests(vllm_url: str) -> float:
    text = httpx.get(vllm_url + "/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("vllm:request_success_total")
    )


def test_models_lists_the_catalog_with_each_adapters_parent(client: openai.OpenAI) -> None:
    models = {m.id: getattr(m, "parent", None) for m in client.models.list()}
    assert models == {BASE: None, "sql-bot": BASE, "support-tone": BASE, "summarizer": BASE}


def test_an_adapter_changes_the_output_and_an_alias_does_not(client: openai.OpenAI) -> None:
    base, sql, tone = answer(client, BASE), answer(client, "sql-bot"), answer(client, "support-tone")
    assert len({base, sql, tone}) == 3, (base, sql, tone)
    assert answer(client, "tiny") == base  # the alias names the base model
    assert answer(client, "sql-bot") == sql  # the same adapter, the same weights: applied, not random


def test_an_unknown_adapter_is_404_without_reaching_the_engine(client: openai.OpenAI, vllm_engine: str) -> None:
    before = engine_requests(vllm_engine)
    with pytest.raises(openai.NotFoundError) as caught:
        answer(client, "no-such-adapter")
    assert caught.value.code == "model_not_found"
    assert engine_requests(vllm_engine) == before


def test_an_adapter_loaded_at_run_time_is_served(client: openai.OpenAI, vllm_engine: str, run_dir: Path) -> None:
    """vLLM's runtime load endpoint (VLLM_ALLOW_RUNTIME_LORA_UPDATING): the engine lists the adapter and
    the gateway routes to it once its model discovery has seen it."""
    name = "runtime-bot@v1"
    path = tinylora.build(run_dir / "adapters" / name, seed=tinylora.seed_for(name))
    loaded = httpx.post(
        vllm_engine + "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path)}, timeout=60
    )
    assert loaded.status_code == 200, loaded.text
    deadline = time.monotonic() + 20  # discovery reads the engines' /v1/models every 2 s here
    while name not in {m.id for m in client.models.list()}:
        assert time.monotonic() < deadline, "the gateway never listed the runtime-loaded adapter"
        time.sleep(0.5)
    assert answer(client, name) != answer(client, BASE)
