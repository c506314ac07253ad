"""Operational endpoints are not public: /metrics and /admin/* answer only on the admin listener,
which answers nothing else; model cards carry no internal paths."""

from __future__ import annotations

import httpx

from inferstack_fake_engine import EngineConfig, running_engine

from .gateway_harness import running_gateway
from .test_errors_api import assert_openai_error
from .test_relay_fake_engine import CHAT


async def test_metrics_and_admin_only_on_the_admin_port_and_nothing_else_there() -> None:
    async with (
        running_engine(EngineConfig()) as engine,
        running_gateway([engine]) as (url, _),
        httpx.AsyncClient(timeout=10) as client,
    ):
        for path in ("/metrics", "/admin/usage", "/admin/anything"):
            hidden = await client.get(url + path)
            assert hidden.status_code == 404, path
            assert hidden.json()["error"]["code"] == "not_found"
        scraped = await client.get(url.admin + "/metrics")
        assert scraped.status_code == 200 and "inferstack_requests_total" in scraped.text
        # Failures of dependencies have series from 0, so a rate and an alert work from the first one.
        assert 'inferstack_discovery_errors_total{provider="static"} 0.0' in scraped.text
        assert 'inferstack_upstream_load_scrape_failures_total{reason="too_large"} 0.0' in scraped.text
        assert (await client.get(url.admin + "/admin/usage")).status_code == 401  # there, behind the admin key
        for method, path in (("GET", "/healthz"), ("GET", "/v1/models"), ("POST", "/v1/chat/completions")):
            resp = await client.request(method, url.admin + path, json=CHAT)
            assert resp.status_code == 404, (method, path)
        served = await client.post(url + "/v1/chat/completions", json=CHAT)
        assert served.status_code == 200
        assert (await client.get(url + "/healthz")).status_code == 200


async def test_model_cards_carry_no_weights_path() -> None:
    async with (
        running_engine(EngineConfig()) as engine,
        running_gateway([engine]) as (url, _),
        httpx.AsyncClient(timeout=10) as client,
    ):
        direct = (await client.get(engine + "/v1/models")).json()["data"][0]
        assert "root" in direct  # what vLLM (and the fake engine) put there: the weights' path or repo
        card = (await client.get(url + "/v1/models")).json()["data"][0]
        assert card["id"] == "fake-model"
        assert set(card) <= {"id", "object", "created", "owned_by", "parent", "max_model_len"}
        missing = await client.post(url + "/v1/chat/completions", json={**CHAT, "model": "nope"})
        assert_openai_error(missing, 404, "model_not_found")
