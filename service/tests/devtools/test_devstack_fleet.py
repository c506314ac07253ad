"""The local fleet of ``make up``: the gateway reads its catalog, the engine gets the LoRA flags."""

from __future__ import annotations

from pathlib import Path

from inferstack.catalog import Catalog
from inferstack_devstack.fleet import ADAPTERS, LocalFleet, served_name
from inferstack_engine import tinylora


def test_the_gateway_loads_the_local_catalog_and_resolves_alias_and_adapters(tmp_path: Path) -> None:
    fleet = LocalFleet(tmp_path / "adapters", embed=True)
    catalog = Catalog.load(str(fleet.write_catalog(tmp_path / "catalog.json")))
    assert catalog.models == {"tiny-llama", "tiny-embed"}
    assert catalog.resolve("tiny", 0.5) == "tiny-llama"
    assert catalog.resolve("sql-bot", 0.5) == "sql-bot@v1"
    assert {c["id"]: c.get("parent") for c in catalog.cards()}["summarizer"] == "tiny-llama"
    # The gateway sends `source` as lora_path: a directory holding a built adapter.
    source = fleet.catalog()["adapters"]["summarizer"]["versions"][0]["source"]
    assert source.startswith("/") and tinylora.is_built(Path(source))


def test_the_embedding_model_is_opt_in(tmp_path: Path) -> None:
    assert set(LocalFleet(tmp_path).catalog()["models"]) == {"tiny-llama"}


def test_engine_flags_register_only_the_static_adapters(tmp_path: Path) -> None:
    options, env = LocalFleet(tmp_path).lora_options()
    args = list(options.extra_args)
    assert args[:3] == ["--enable-lora", "--max-loras=2", "--max-lora-rank=8"]
    static = args[args.index("--lora-modules") + 1 :]
    assert [a.split("=", 1)[0] for a in static] == [served_name(a) for a, at_start in ADAPTERS if at_start]
    assert env == {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}  # the others load at run time
