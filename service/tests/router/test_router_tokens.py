"""With KV events on, the router fetches a prompt's token ids (an engine's ``/tokenize``) only for a
route whose profile reads them (``precise_prefix``): other profiles cost no extra request."""

from __future__ import annotations

from pathlib import Path

import httpx

from inferstack_fake_engine import Behaviour, EngineConfig, running_engine

from ..gateway_harness import running_gateway
from ..kvcache import tokenizer_files
from ..test_relay_fake_engine import metric

BODY = {"model": "fake-model", "prompt": "a text prompt, which only the engine can tokenize", "max_tokens": 2}


async def test_only_a_profile_that_reads_token_ids_makes_the_router_ask_for_them(tmp_path: Path) -> None:
    async with (
        running_engine(EngineConfig(behaviour=Behaviour())) as engine,
        running_gateway([engine], kv_events={"enabled": True, "endpoints": {engine: f"ipc://{tmp_path}/kv.ipc"}}) as (
            url,
            _,
        ),
        httpx.AsyncClient() as client,
    ):
        asked = []
        for policy in ("round_robin", "prefix_affinity", "precise_prefix"):
            headers = {"x-inferstack-routing-policy": policy}
            assert (await client.post(url + "/v1/completions", json=BODY, headers=headers)).status_code == 200
            text = (await client.get(url.admin + "/metrics")).text
            asked.append(metric(text, "inferstack_kv_tokenize_seconds_count"))  # "failed": no /tokenize here
        assert asked == [0, 0, 1]


async def test_the_prompt_is_tokenized_by_the_tokenizer_of_the_requests_model(tmp_path: Path) -> None:
    # A local tokenizer for the request's model, trusted from the first request (check_first=0): its ids
    # route, and the engine is not asked. Looked up under another name (none), the model would have no
    # tokenizer and every request would cost a /tokenize call (this engine has none: "failed").
    tokenizer = tokenizer_files.write(tmp_path / "tokenizer")
    local = {"dirs": {"fake-model": str(tokenizer)}, "check_first": 0, "check_fraction": 0}
    async with running_engine(EngineConfig(behaviour=Behaviour())) as engine:
        kv_events = {"enabled": True, "endpoints": {engine: f"ipc://{tmp_path}/kv.ipc"}, "local_tokenizer": local}
        async with running_gateway([engine], kv_events=kv_events) as (url, _), httpx.AsyncClient() as client:
            headers = {"x-inferstack-routing-policy": "precise_prefix"}
            assert (await client.post(url + "/v1/completions", json=BODY, headers=headers)).status_code == 200
            text = (await client.get(url.admin + "/metrics")).text
            assert metric(text, "inferstack_kv_tokenizer_local", model="fake-model") == 1
            assert metric(text, "inferstack_kv_tokenize_seconds_count") == 0
