"""What a client or an engine controls on the KV-event path, at its worst: nothing of it may fail a request."""

from __future__ import annotations

from pathlib import Path

from inferstack.kvcache.blocks import prompt_block_hashes

from ..test_relay_fake_engine import metric
from .events import publish_until_indexed, stored
from .test_gateway_precise import HEADERS, TOKENS, precise_gateway


async def test_token_ids_no_engine_has_are_routed_without_them_not_failed(tmp_path: Path) -> None:
    """A completions prompt of token ids is hashed as vLLM would: ids it cannot hash (negative, or past
    64 bits) must not turn into a 500; the request is routed without token ids and the engine judges it."""
    # Two replicas, so the scorer decides (one is picked without scoring); the second one is silent.
    async with precise_gateway(tmp_path, 2, publishing=0) as (pub, _, url, client):
        # The engine reports a block: its view is fresh, so the scorer hashes every prompt.
        hashes = prompt_block_hashes(TOKENS, 16)[:1]
        await publish_until_indexed(pub, client, url.admin, 1, stored(hashes, TOKENS[:16], 16))
        for bad in (-1, 1 << 64, 1 << 200):
            body = {"model": "fake-model", "prompt": [bad, *TOKENS], "max_tokens": 2}
            r = await client.post(url + "/v1/completions", json=body, headers=HEADERS)
            assert r.status_code == 200, (bad, r.status_code, r.text)
        text = (await client.get(url.admin + "/metrics")).text
        assert metric(text, "inferstack_routing_decisions_total", policy="precise_prefix", reason="no_tokens") == 3
