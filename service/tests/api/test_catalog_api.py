"""The fleet catalog in the gateway (INFERSTACK_CATALOG_FILE): /v1/models lists every catalogued
model and adapter, aliases and adapter rollouts resolve before the engine sees the name, and a name
the catalog does not know is 404 without an engine seeing the request. Fake engines (real HTTP)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferstack.catalog import Catalog
from inferstack.filters.prices import parse_prices
from inferstack_fake_engine import EngineConfig, running_engine

from ..gateway_harness import running_gateway

CATALOG = {
    "models": {"fake-model": {}, "cold-model": {}},
    "aliases": {"chat": "fake-model"},
    "adapters": {
        "sql-bot": {
            "base": "fake-model",
            "versions": [
                {"served_name": "sql-bot@v3", "weight_percent": 90},
                {"served_name": "sql-bot@v4", "weight_percent": 10},
            ],
        },
    },
}


@contextlib.asynccontextmanager
async def gateway_with_catalog(tmp_path: Path, catalog: dict[str, Any]) -> AsyncIterator[tuple[str, str]]:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    # The engine serves the base and both adapter versions, as vLLM does with --lora-modules.
    config = EngineConfig(models=("fake-model", "sql-bot@v3", "sql-bot@v4"), record_requests=500)
    async with (
        running_engine(config) as engine,
        running_gateway([engine], catalog_file=str(path), hold_timeout=0.2) as (url, _),
    ):
        yield url, engine


async def sent_models(client: httpx.AsyncClient, engine: str) -> list[str]:
    return [r["body"]["model"] for r in (await client.get(engine + "/_fake/requests")).json()]


async def test_models_lists_every_model_and_adapter_with_its_parent(tmp_path: Path) -> None:
    async with gateway_with_catalog(tmp_path, CATALOG) as (url, _), httpx.AsyncClient(base_url=url) as client:
        data = (await client.get("/v1/models")).json()["data"]
        assert [(m["id"], m.get("parent")) for m in data] == [
            ("cold-model", None),  # no replica serves it: listed all the same
            ("fake-model", None),
            ("sql-bot", "fake-model"),
        ]


async def test_aliases_and_adapters_resolve_before_the_engine(tmp_path: Path) -> None:
    async with gateway_with_catalog(tmp_path, CATALOG) as (url, engine), httpx.AsyncClient(base_url=url) as client:
        for model in ["chat", *["sql-bot"] * 200]:
            resp = await client.post("/v1/completions", json={"model": model, "prompt": "x", "max_tokens": 2})
            assert resp.status_code == 200, resp.text
        sent = await sent_models(client, engine)
        assert sent[0] == "fake-model"
        # A 90/10 rollout: both versions get traffic, the current one most. 200 draws: P(no v4) =
        # 0.9**200 ~ 7e-10, P(v3 <= 150) < 1e-12 (40 draws missed v4 once in CI: 0.9**40 ~ 1.5 %).
        assert {"sql-bot@v3", "sql-bot@v4"} == set(sent[1:])
        assert sent[1:].count("sql-bot@v3") > 150


async def test_a_version_asked_for_by_its_served_name_is_sent_as_it_is(tmp_path: Path) -> None:
    # A client may pin an adapter version (or name any model an engine serves): not an alias, so the
    # catalog resolves nothing and the name goes to the engine unchanged.
    async with gateway_with_catalog(tmp_path, CATALOG) as (url, engine), httpx.AsyncClient(base_url=url) as client:
        resp = await client.post("/v1/completions", json={"model": "sql-bot@v4", "prompt": "x", "max_tokens": 2})
        assert resp.status_code == 200, resp.text
        assert await sent_models(client, engine) == ["sql-bot@v4"]


@pytest.mark.parametrize("model", ["sql-bot-v9", "sql-bot@v5"])
async def test_unknown_adapter_is_404_and_no_engine_sees_it(tmp_path: Path, model: str) -> None:
    async with gateway_with_catalog(tmp_path, CATALOG) as (url, engine), httpx.AsyncClient(base_url=url) as client:
        resp = await client.post("/v1/completions", json={"model": model, "prompt": "x"})
        assert resp.status_code == 404
        assert resp.json()["error"]["code"] == "model_not_found"
        assert await sent_models(client, engine) == []


async def test_a_catalogued_model_without_replicas_is_held_not_404(tmp_path: Path) -> None:
    async with gateway_with_catalog(tmp_path, CATALOG) as (url, _), httpx.AsyncClient(base_url=url) as client:
        resp = await client.post("/v1/completions", json={"model": "cold-model", "prompt": "x"})
        # Held for hold_timeout (0.2 s) waiting for an engine, then 503: KEDA would have started one.
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "no_healthy_upstream"


def test_a_catalog_pointing_at_no_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({**CATALOG, "aliases": {"chat": "gone-model"}}))
    with pytest.raises(ValueError, match=r"catalog\.json: chat points at 'gone-model', which is not a model"):
        Catalog.load(str(path))
    path.write_text("{")
    with pytest.raises(ValueError, match=r"catalog\.json: JSONDecodeError"):
        Catalog.load(str(path))


def test_the_generated_catalog_and_prices_load() -> None:
    generated = Path(__file__).resolve().parents[3] / "k8s" / "fleet" / "generated"
    prices = parse_prices((generated / "prices.yaml").read_text())
    # An alias or adapter costs what its model costs.
    assert prices.usd_per_1m("chat") == prices.usd_per_1m("qwen2.5-7b-instruct") == pytest.approx((0.1, 0.4))
    assert prices.usd_per_1m("sql-bot") == prices.usd_per_1m("qwen2.5-7b-instruct")
    # Requests are priced by the name they resolved to: every adapter version has its base's price.
    assert prices.usd_per_1m("sql-bot@v3") == prices.usd_per_1m("sql-bot@v4") == prices.usd_per_1m("sql-bot")
    catalog = Catalog.load(str(generated / "catalog.json"))
    assert catalog.resolve("chat", 0.5) == "qwen2.5-7b-instruct"
    assert catalog.resolve("sql-bot", 0.95) == "sql-bot@v4"
    assert catalog.resolve("sql-bot", 0.5) == "sql-bot@v3"
    assert catalog.resolve("nope", 0.5) is None


@pytest.mark.parametrize(
    ("versions", "reason"),
    [
        ([], "no versions"),
        ([{"served_name": "sql-bot@v3", "weight_percent": 0}], "weights"),
        (
            [{"served_name": "sql-bot@v3", "weight_percent": 110}, {"served_name": "v4", "weight_percent": -10}],
            "weights",
        ),
    ],
)
def test_an_adapter_no_request_could_be_routed_to_is_refused_at_load(
    tmp_path: Path, versions: list[dict[str, Any]], reason: str
) -> None:
    """An adapter without versions loaded, and every request for it raised in the rollout draw (a 500);
    weights that do not draw (all 0, or one negative) chose a version no operator meant."""
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({**CATALOG, "adapters": {"sql-bot": {"base": "fake-model", "versions": versions}}}))
    with pytest.raises(ValueError, match=rf"catalog\.json: adapter 'sql-bot': {reason}"):
        Catalog.load(str(path))


@pytest.mark.parametrize("source", ["s3://bucket/adapters/../../etc/v3", "s3://bucket/adapters/sql-bot/./v3", "../x"])
def test_an_adapter_source_that_climbs_out_of_the_adapters_root_is_refused_at_load(tmp_path: Path, source: str) -> None:
    """adapter_path puts an S3 source below the engines' adapters root; '..' in it named any directory."""
    versions = [{"served_name": "sql-bot@v3", "weight_percent": 100, "source": source}]
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({**CATALOG, "adapters": {"sql-bot": {"base": "fake-model", "versions": versions}}}))
    with pytest.raises(ValueError, match=r"adapter version 'sql-bot@v3': source .* outside the adapters root"):
        Catalog.load(str(path))
    versions[0]["source"] = "s3://bucket/adapters/sql-bot/v3"  # the same without the climb loads
    path.write_text(json.dumps({**CATALOG, "adapters": {"sql-bot": {"base": "fake-model", "versions": versions}}}))
    assert Catalog.load(str(path)).adapter_path("sql-bot@v3", "/adapters") == "/adapters/sql-bot/v3"
