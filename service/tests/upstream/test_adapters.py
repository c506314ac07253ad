"""The gateway's record of where adapters are, and what it reads from vLLM: /v1/models cards,
``vllm:lora_requests_info`` (as vLLM 0.32 writes it), the catalog's adapter paths."""

from __future__ import annotations

from inferstack.catalog import AdapterRoute, AdapterVersion, Catalog, LoraSpec
from inferstack.upstream.adapters import AdapterPlacement
from inferstack.upstream.load import parse_lora_info

URL = "http://r1"


def catalog() -> Catalog:
    versions = {
        "sql-bot@v3": AdapterVersion("sql-bot", "qwen", "s3://bucket/adapters/qwen/sql-bot/v3/"),
        "local@v1": AdapterVersion("local", "qwen", "/srv/adapters/local"),
        "elsewhere@v1": AdapterVersion("elsewhere", "qwen", "s3://other/x/elsewhere/v1"),
    }
    return Catalog(
        models=frozenset({"qwen"}),
        aliases={},
        adapters={v.adapter: AdapterRoute("qwen", ((served, 100),)) for served, v in versions.items()},
        versions=versions,
        lora={"qwen": LoraSpec(2, "s3://bucket/adapters/qwen/")},
    )


def test_adapter_paths_mirror_the_bucket_below_the_root() -> None:
    c = catalog()
    assert c.adapter_path("sql-bot@v3", "/adapters") == "/adapters/sql-bot/v3"
    assert c.adapter_path("local@v1", "/adapters") == "/srv/adapters/local"
    assert c.adapter_path("elsewhere@v1", "/adapters/") == "/adapters/elsewhere/v1"
    assert c.adapter_path("qwen", "/adapters") is None
    assert ("sql-bot@v3", "qwen", "sql-bot") in c.info() and ("qwen", "qwen", "") in c.info()


def test_the_lru_model_evicts_the_least_recently_sent() -> None:
    where = AdapterPlacement(catalog())
    assert where.sent(URL, "sql-bot@v3") is True  # not resident before: a load
    assert where.sent(URL, "local@v1") is True
    assert where.sent(URL, "sql-bot@v3") is False
    assert where.sent(URL, "elsewhere@v1") is True  # 2 slots: evicts local@v1, the least recent
    replica = where.replica(URL)
    assert replica is not None and list(replica.resident) == ["sql-bot@v3", "elsewhere@v1"]
    where.failed(URL, "elsewhere@v1")  # its load failed: not resident, not in flight
    assert list(replica.resident) == ["sql-bot@v3"] and replica.in_flight["elsewhere@v1"] == 0


def test_engine_cards_name_registered_adapters_and_their_base() -> None:
    where = AdapterPlacement(None)
    cards = {"base": {"id": "base", "parent": None}, "tone": {"id": "tone", "parent": "base"}}
    where.observe_cards(URL, cards)
    assert where.base_of("tone") == "base" and where.base_of("base") is None
    assert where.registered(URL, "tone")
    replica = where.replica(URL)
    assert replica is not None and list(replica.resident) == ["tone"]  # --lora-modules: loaded at start
    assert where.sent(URL, "tone") is False  # so its first request is no swap
    where.observe_cards(URL, {"base": cards["base"]})  # the engine restarted: it knows tone no more
    assert not replica.resident and not where.registered(URL, "tone")


def test_in_flight_adapters_from_the_engine_are_resident_and_set_the_slots() -> None:
    where = AdapterPlacement(catalog())
    where.observe_lora_info(URL, 1, ["local@v1"])
    assert where.slots(URL, "qwen") == 1  # the engine's figure wins over the catalog's 2
    replica = where.replica(URL)
    assert replica is not None and list(replica.resident) == ["local@v1"]


def test_lora_requests_info_takes_the_newest_series() -> None:
    # vLLM sets each new label set to the current time and leaves the old ones behind.
    text = b"""# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="2",running_lora_adapters="a,b",waiting_lora_adapters=""} 1.7e9
vllm:lora_requests_info{max_lora="2",running_lora_adapters="c",waiting_lora_adapters="a"} 1.8e9
vllm:lora_requests_info{max_lora="2",running_lora_adapters="",waiting_lora_adapters=""} 1.75e9
"""
    info = parse_lora_info(text)
    assert info is not None and info.max_lora == 2 and info.in_flight == ("c", "a")
    assert parse_lora_info(b"vllm:num_requests_running 1\n") is None


def test_adapters_listed_at_start_fill_the_free_slots_only() -> None:
    where = AdapterPlacement(catalog())  # qwen: 2 slots
    where.sent(URL, "local@v1")
    where.loaded(URL, "local@v1")
    cards = {n: {"id": n, "parent": "qwen"} for n in ("local@v1", "sql-bot@v3", "elsewhere@v1")}
    where.observe_cards(URL, cards)
    replica = where.replica(URL)
    assert replica is not None and len(replica.resident) == 2 and "local@v1" in replica.resident


def test_the_shared_order_of_every_gateways_sends_decides_what_is_resident() -> None:
    where = AdapterPlacement(catalog())
    used: list[tuple[str, str]] = []
    where.on_use = lambda url, adapter: used.append((url, adapter))
    where.sent(URL, "local@v1")  # this gateway's record: local resident
    assert used == [(URL, "local@v1")]
    where.done(URL, "local@v1")
    # Other gateways sent sql-bot, then elsewhere, after it: the engine's LRU holds those two.
    where.observe_shared(URL, ["local@v1", "sql-bot@v3", "elsewhere@v1"])
    assert list(where.replicas[URL].resident) == ["sql-bot@v3", "elsewhere@v1"]
    # A send still in flight, and one made after the shared read, are the newest whatever the record says.
    where.sent(URL, "local@v1")
    where.observe_shared(URL, ["local@v1", "sql-bot@v3", "elsewhere@v1"])
    assert list(where.replicas[URL].resident) == ["elsewhere@v1", "local@v1"]
    where.done(URL, "local@v1")
    where.observe_shared(URL, ["sql-bot@v3", "local@v1", "elsewhere@v1"], since=["sql-bot@v3"])
    assert list(where.replicas[URL].resident) == ["elsewhere@v1", "sql-bot@v3"]
    # What no gateway sent lately (loaded at the engine's start) keeps a slot nobody else needs.
    listed = {name: {"parent": "qwen"} for name in ("sql-bot@v3", "local@v1", "elsewhere@v1")}
    where.observe_cards("http://r2", {"qwen": {}, **listed})
    assert list(where.replicas["http://r2"].resident) == ["local@v1", "sql-bot@v3"]  # the first two listed
    where.observe_shared("http://r2", [])
    assert list(where.replicas["http://r2"].resident) == ["local@v1", "sql-bot@v3"]
    where.observe_shared("http://r2", ["elsewhere@v1"])
    assert list(where.replicas["http://r2"].resident) == ["sql-bot@v3", "elsewhere@v1"]
    # Once the engine's list is read, a shared record older than an engine restart is not believed.
    where.observe_cards(URL, {"qwen": {}, "sql-bot@v3": {"parent": "qwen"}})
    where.observe_shared(URL, ["elsewhere@v1", "local@v1", "sql-bot@v3"])
    assert list(where.replicas[URL].resident) == ["sql-bot@v3"]
