"""Every panel query of every dashboard returns data from a live stack.

A real Prometheus (1 s scrape, our rules) scrapes the real vLLM of ``live_stack``, a gateway in
front of it, and the fixture exporter (DCGM / kube-state-metrics / Karpenter / KEDA shapes). The
test drives traffic that touches each feature the panels show, then polls every query until all
return a number, or fails listing the empty ones.

The gateway here is started by this test (in front of the session's real vLLM) with small caps, and
with a second replica that always fails, so held requests, 429s, upstream errors, retries and
ejections get samples too. A third replica of the model, the fake engine with two LoRA slots, and a
catalog with one adapter of the model give the adapter panels (loads, placement, routing decisions,
the per-served-name joins) their samples: the real vLLM here runs without LoRA.

No query may stay empty. When one reads a gateway metric that is in the catalogue (docs/metrics.md)
but that the running gateway does not export, the failure says so: the catalogue promises it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from observability import promapi
from observability.fixtures.exporter import Scene, serve
from observability.queries import PanelQuery, all_queries, substitute

from .promserver import Job, prometheus

pytestmark = pytest.mark.vllm

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "inferstack"
DEADLINE_S = 90.0
SHARED_PREFIX = "You are a terse assistant for an inference platform. " * 12
API_KEY = "isk-observability-live-test"  # test-only key of a throwaway gateway on 127.0.0.1
HEADERS = {"Authorization": f"Bearer {API_KEY}"}
# A second tenant allowed one request a minute: its second request is a 429 whatever the machine's
# load (the burst's full-queue 429s depend on timing; on a loaded machine they did not always come).
LIMITED_KEY = "isk-observability-live-limited"
# Two adapters of the model: the first loads while the traffic starts, the second at its end, so the
# load-time histogram moves between two scrapes (a series born at 1 shows no rate).
ADAPTERS = {"live-adapter": "live-adapter@v1", "live-adapter-b": "live-adapter-b@v1"}


def _host(url: str) -> str:
    return url.split("://", 1)[1].rstrip("/")


@pytest.fixture
def fixture_exporter(live_stack: Any) -> Iterator[str]:
    server = serve(Scene(NAMESPACE, live_stack.model), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def exercised_gateway(live_stack: Any, tmp_path: Path, run_dir: Path) -> Iterator[Any]:
    """A gateway in front of the real vLLM, a replica that answers 500 to everything and a fake replica
    with LoRA slots, with a catalog declaring the model and one adapter of it (ADAPTER)."""
    import inferstack_devstack as devstack

    stack = devstack.Stack(run_dir=tmp_path / "stack")
    try:
        port = devstack.free_port()
        failing = stack.start(
            "failing-replica",
            [sys.executable, "-m", "inferstack_fake_engine", "--host", "127.0.0.1", "--port", str(port),
             "--model", live_stack.model, "--error-status", "500", "--error-rate", "1"],
            f"http://127.0.0.1:{port}",
        )
        stack.wait_ready(failing, "/v1/models", 30)
        port = devstack.free_port()
        lora = stack.start(
            "lora-replica",
            [sys.executable, "-m", "inferstack_fake_engine", "--host", "127.0.0.1", "--port", str(port),
             "--model", live_stack.model, "--max-loras", "2", "--runtime-lora-updating",
             "--lora-load-delay", "0.05",
             # Slow enough that its in-flight cap fills in the burst below like the real engine's.
             "--ttft", "1"],
            f"http://127.0.0.1:{port}",
        )
        stack.wait_ready(lora, "/v1/models", 30)
        # The catalog: the model with two adapter slots and one adapter, loaded on demand from a local
        # directory (the fake engine checks it exists; the real vLLM never gets it: it lists no slots).
        adapters = {}
        for name, version in ADAPTERS.items():
            (tmp_path / version).mkdir()
            adapters[name] = {"base": live_stack.model, "versions": [
                {"served_name": version, "source": str(tmp_path / version), "weight_percent": 100}]}
        catalog = tmp_path / "catalog.json"
        catalog.write_text(json.dumps({
            "models": {live_stack.model: {"lora": {"max_loras": 2, "adapters_uri": ""}}},
            "aliases": {},
            "adapters": adapters,
        }))
        # A tenant with a key, a price table and a budget: cost, tenant and budget series.
        keys = tmp_path / "keys.yaml"
        keys.write_text(yaml.safe_dump({"keys": [
            {"key_sha256": hashlib.sha256(API_KEY.encode()).hexdigest(), "tenant": "acme",
             "name": "observability live test", "models": "*", "monthly_budget_usd": 100},
            {"key_sha256": hashlib.sha256(LIMITED_KEY.encode()).hexdigest(), "tenant": "limited",
             "name": "observability live test, one request a minute", "models": "*", "rpm": 1}]}))
        prices = tmp_path / "prices.yaml"
        price = {"prompt_per_1m": 0.5, "completion_per_1m": 2.0}  # the budget must last the test
        priced = {live_stack.model: price, **dict.fromkeys(ADAPTERS.values(), price)}
        prices.write_text(yaml.safe_dump({"models": priced}))
        gateway = devstack.start_gateway(stack, [live_stack.vllm_url, failing.url, lora.url], env={
            "INFERSTACK_AUTH_ENABLED": "true",
            "INFERSTACK_CATALOG_FILE": str(catalog),
            "INFERSTACK_KEYS_FILE": str(keys),
            "INFERSTACK_PRICES_FILE": str(prices),
            "INFERSTACK_MAX_IN_FLIGHT_PER_REPLICA": "2",  # a burst of 12 streams: some run, 2 wait, the rest 429
            "INFERSTACK_MAX_HELD_REQUESTS": "2",
            "INFERSTACK_HOLD_TIMEOUT": "30",
            # KV events from the real engine (precise_prefix panels); the failing replica publishes none.
            **devstack.kv_events_env({
                live_stack.vllm_url: devstack.kv_events_endpoint(run_dir, live_stack.vllm_url),
                failing.url: f"ipc://{tmp_path}/no-events.ipc",
                lora.url: f"ipc://{tmp_path}/no-lora-events.ipc",
            }, tokenizer_dirs={live_stack.model: str(devstack.DEFAULT_MODEL_DIR)}),  # the gateway's own tokenizer
        })
        yield gateway  # .url: the API; .admin_url: /metrics
    finally:
        stack.stop()


def _chat(client: httpx.Client, model: str, content: str, *, stream: bool, max_tokens: int = 8,
          **extra: Any) -> None:
    body = {"model": model, "max_tokens": max_tokens, "stream": stream,
            "messages": [{"role": "user", "content": content}], **extra}
    if stream:
        body["stream_options"] = {"include_usage": True}
        with client.stream("POST", "/v1/chat/completions", json=body) as r:
            for _ in r.iter_lines():
                pass
    else:
        client.post("/v1/chat/completions", json=body)


def drive_traffic(gateway: str, model: str) -> None:
    """Requests that give every gateway and engine series a sample. Statuses are not asserted here:
    the gateway's own tests do that."""
    with httpx.Client(base_url=gateway, timeout=60, headers=HEADERS) as c:
        for _ in range(2):  # deterministic (temperature 0) and repeated: a response-cache miss, then a hit
            _chat(c, model, "Name one prime number.", stream=False, temperature=0)
        for i in range(6):  # shared prefix: prefix-cache hits in vLLM, prefix routing in the gateway
            _chat(c, model, f"{SHARED_PREFIX} Question {i}: what is a KV cache?", stream=False)
            _chat(c, model, f"{SHARED_PREFIX} Question {i}: what is TTFT?", stream=True, max_tokens=16)
        for policy in ("precise_prefix", "round_robin"):  # KV-event index panels; hit rate per policy
            c.headers["x-inferstack-routing-policy"] = policy
            for i in range(3):
                _chat(c, model, f"{SHARED_PREFIX} {SHARED_PREFIX} Question {i}: which policy?", stream=False)
        # Requests for an adapter of the model: a runtime load on the replica with free slots, then
        # requests where it is loaded (inferstack_adapter_* and the fleet dashboard's joins).
        first, second = ADAPTERS
        c.headers["x-inferstack-routing-policy"] = "adapter_affinity"
        for i in range(3):
            _chat(c, first, f"Adapter question {i}", stream=i == 0)
        del c.headers["x-inferstack-routing-policy"]
        with c.stream("POST", "/v1/completions", json={"model": model, "prompt": "Once upon a time",
                                                        "max_tokens": 8, "stream": True}) as r:
            for _ in r.iter_lines():
                pass
        c.post("/v1/chat/completions", json={"model": model})  # 400: no messages
        c.post("/v1/chat/completions", json={"model": "no-such-model", "messages": []})  # 404
        # A client that goes away mid-stream: client_disconnect upstream error, "abort" in vLLM.
        with c.stream("POST", "/v1/chat/completions", json={
            "model": model, "max_tokens": 400, "stream": True,
            "messages": [{"role": "user", "content": "Count to a thousand."}]}) as r:
            for _ in zip(range(3), r.iter_lines(), strict=False):
                pass
    # A tenant's rate limit: the second request of a one-a-minute key is a 429 (rate-limit panel).
    with httpx.Client(base_url=gateway, timeout=60, headers={"Authorization": f"Bearer {LIMITED_KEY}"}) as c:
        statuses = [c.post("/v1/chat/completions", json={"model": model, "max_tokens": 1, "messages": [
            {"role": "user", "content": "Rate limit me."}]}).status_code for _ in range(2)]
        assert statuses[1] == 429, statuses
    # A burst above the per-replica caps (2 on each of three replicas): held requests and 429s from the
    # full wait queue.
    with httpx.Client(base_url=gateway, timeout=60, headers=HEADERS) as c, ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda i: _chat(c, model, f"Burst {i}", stream=True, max_tokens=48), range(12)))
    # The second adapter's load, seconds after the first one's.
    with httpx.Client(base_url=gateway, timeout=60, headers=HEADERS) as c:
        c.headers["x-inferstack-routing-policy"] = "adapter_affinity"
        _chat(c, second, "Adapter question", stream=False)


# -- which empty queries are acceptable ---------------------------------------------------------

def _catalogue() -> set[str]:
    return set(re.findall(r"^\| `(inferstack_[a-z_]+)` \|", (REPO / "docs" / "metrics.md").read_text(), re.M))


def _declared(gateway: str) -> set[str]:
    text = httpx.get(f"{gateway}/metrics", timeout=10, headers=HEADERS).text
    names = set(re.findall(r"^# TYPE (\S+)", text, re.M))
    return names | {f"{n}_total" for n in names}


def _recorded_sources() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in (REPO / "observability" / "rules").glob("*.yaml"):
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                if "record" in r:
                    out.setdefault(r["record"], set()).update(_gateway_metrics(r["expr"], {}))
    return out


def _gateway_metrics(expr: str, recorded: dict[str, set[str]]) -> set[str]:
    names = {re.sub(r"_(bucket|count|sum)$", "", n)
             for n in re.findall(r"(?<![:\w])(inferstack_[a-z_]+)", expr)}
    for rec in re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", expr):
        names |= recorded.get(rec, set())
    return names


def test_every_panel_query_returns_data(live_stack: Any, exercised_gateway: Any, fixture_exporter: str,
                                        tmp_path: Path) -> None:
    ns = {"namespace": NAMESPACE}
    jobs = [
        Job("inferstack-gateway", [_host(exercised_gateway.admin_url)], ns),
        Job("inferstack-engine", [_host(live_stack.vllm_url)], ns),
        Job("fixtures", [fixture_exporter], {"fixture": "recorded-shape"}, honor_labels=True),
    ]
    variables = {"namespace": NAMESPACE, "model": live_stack.model, "datasource": "prometheus"}
    queries = all_queries()
    assert len(queries) > 50

    with prometheus(tmp_path / "prometheus", jobs) as prom:
        # Prometheus scrapes new targets only after its first target sync (~5 s): counters that
        # moved before their first scrape would show no increase at all.
        _wait_for(lambda: len(promapi.query(prom, "up == 1")) == len(jobs), "every target scraped", prom)
        drive_traffic(exercised_gateway.url, live_stack.model)

        catalogue, declared, recorded = _catalogue(), _declared(exercised_gateway.admin_url), _recorded_sources()

        def not_built(q: PanelQuery) -> set[str]:
            return {m for m in _gateway_metrics(q.expr, recorded) if m in catalogue and m not in declared}

        empty: list[PanelQuery] = list(queries)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            empty = [q for q in empty
                     if not promapi.has_numbers(promapi.query(prom, substitute(q.expr, variables, range_="5m")))]
            if not empty or time.monotonic() > deadline:
                break
            time.sleep(1)  # polling interval, not synchronisation: the loop ends on data or the deadline

        preview_dir = os.environ.get("OBSERVABILITY_PREVIEW_DIR")
        if preview_dir:  # PNGs of what was just proven, for a reviewer (CI keeps them as artefacts)
            from observability import preview

            preview.render_all(prom, Path(preview_dir), variables, minutes=3)

    assert not empty, "panel queries with no data:\n" + "\n".join(
        f"  {q.where}: {substitute(q.expr, variables)}"
        + (f"\n    documented in docs/metrics.md, not exported: {sorted(not_built(q))}" if not_built(q) else "")
        for q in empty)


def _wait_for(check: Callable[[], bool], what: str, prom: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout}s; targets: {promapi.query(prom, 'up')}")
        time.sleep(0.5)
