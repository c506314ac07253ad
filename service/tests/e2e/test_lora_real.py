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
def gateway(vllm_engine: str, local_fleet: LocalFleet, run_dir: Path) -> Iterator[tuple[str, str, str]]:
    """(public URL, admin URL, API key) of a gateway reading ``make up``'s catalog."""
    stack = Stack(run_dir=run_dir)
    try:
        keys = run_dir / "lora-keys.yaml"
        key = dev_key(keys)
        catalog = local_fleet.write_catalog(run_dir / "lora-catalog.json")
        service = start_gateway(stack, [vllm_engine], env={**auth_env(keys), "INFERSTACK_CATALOG_FILE": str(catalog)})
        yield service.url, service.admin_url, key
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def client(gateway: tuple[str, str, str]) -> openai.OpenAI:
    url, _, key = gateway
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


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


def gateway_loads(admin_url: str, adapter: str) -> dict[str, float]:
    """The gateway's ``inferstack_adapter_loads_total`` for one adapter version, by kind."""
    loads = {}
    for line in httpx.get(admin_url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("inferstack_adapter_loads_total{") and f'adapter="{adapter}"' in line:
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            loads[kind] = float(line.rsplit(" ", 1)[1])
    return loads


def engine_models(vllm_url: str) -> set[str]:
    return {m["id"] for m in httpx.get(vllm_url + "/v1/models", timeout=10).json()["data"]}


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


def test_the_gateway_loads_a_catalogued_adapter_on_first_use(
    client: openai.OpenAI, gateway: tuple[str, str, str], vllm_engine: str
) -> None:
    """``summarizer@v1`` is in the catalog only: the first request makes the gateway load it into the
    engine (POST /v1/load_lora_adapter with the catalog's source), once; the next ones find it there."""
    assert "summarizer@v1" not in engine_models(vllm_engine)
    first = answer(client, "summarizer")
    assert first != answer(client, BASE)
    assert answer(client, "summarizer") == first
    assert "summarizer@v1" in engine_models(vllm_engine)
    assert gateway_loads(gateway[1], "summarizer@v1") == {"runtime_load": 1.0}
