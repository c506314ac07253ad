"""Every slot the router takes for an attempt it gives back, to the model it took it for: once the
requests are answered (one of them retried), the model's demand (what the autoscaler reads) is 0."""

from __future__ import annotations

import httpx

from inferstack_fake_engine import Behaviour

from ..test_relay_fake_engine import CHAT, configure, fleet, metric


async def test_after_the_answers_the_models_demand_is_zero_again() -> None:
    retry = {"budget_percent": 100, "backoff_base": 0.001}
    async with (
        fleet(Behaviour(output_tokens=2), Behaviour(output_tokens=2), routing_policy="round_robin", retry=retry) as (
            url,
            engines,
            _app,
        ),
        httpx.AsyncClient(timeout=30) as client,
    ):
        await configure(client, sorted(engines)[0], error_status=503)  # the first request is retried
        for _ in range(2):
            assert (await client.post(url + "/v1/chat/completions", json=CHAT)).status_code == 200
        text = (await client.get(url.admin + "/metrics")).text
        assert "inferstack_model_demand" in text
        assert metric(text, "inferstack_model_demand", model="fake-model") == 0
