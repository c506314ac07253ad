"""The router asks a stream for its usage chunk (to count tokens without a tokenizer) and keeps
whatever else the client put in ``stream_options``; the relay strips the chunk if the client did not
ask for it. Against a fake engine that records what it was sent."""

from __future__ import annotations

import httpx

from inferstack_fake_engine import Behaviour

from ..test_relay_fake_engine import CHAT, fleet, recorded, sse_events


async def test_the_clients_other_stream_options_reach_the_engine_with_include_usage_added() -> None:
    async with fleet(Behaviour(output_tokens=2)) as (url, (engine,), _), httpx.AsyncClient() as client:
        options = {"include_usage": False, "continuous_usage_stats": False}
        resp = await client.post(url + "/v1/chat/completions", json={**CHAT, "stream": True, "stream_options": options})
        assert resp.status_code == 200
        sent = (await recorded(client, engine))[-1]["body"]
        assert sent["stream_options"] == {"include_usage": True, "continuous_usage_stats": False}
        assert not any(b'"usage":{' in e for e in sse_events(resp.content))  # it did not ask for it
