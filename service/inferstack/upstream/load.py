"""Load signals scraped from each replica's ``/metrics`` about every second.

The gateway's own in-flight count is instant and authoritative; the engine's queue and KV-cache
usage add what the gateway cannot see (other gateways' traffic, long prefills). A scrape older than
``max_age`` steers nothing: ``Endpoint.fresh_load`` returns None for it and policies fall back to
in-flight counts. Metric names: vLLM v1 (see docs/metrics.md and the field notes); the mapping is
this one table, so another engine only needs another table.

A scrape that gives nothing (no answer in time, a status other than 200, an answer over
``bounds.METRICS_BYTES``) is counted, ``inferstack_upstream_load_scrape_failures_total{reason}``;
an answer too large is also logged, once per replica while it lasts: it is parsed on the event loop,
every second, and vLLM's LoRA info series grow without end.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

import aiohttp

from ..bounds import METRICS_BYTES, TooLarge, read_bounded
from ..clock import monotonic
from ..metrics.gateway import GatewayMetrics
from .adapters import AdapterPlacement
from .cluster import Cluster
from .endpoint import EngineLoad

log = logging.getLogger("inferstack.upstream")

VLLM_METRICS = {
    "running": b"vllm:num_requests_running",
    "waiting": b"vllm:num_requests_waiting",
    "kv_cache_usage": b"vllm:kv_cache_usage_perc",
}


def parse_load(text: bytes, at: float) -> EngineLoad | None:
    """Sum each gauge over its label sets (one per model/engine); None if the engine exports none."""
    values = dict.fromkeys(VLLM_METRICS, 0.0)
    seen = False
    for line in text.splitlines():
        if not line.startswith(b"vllm:"):
            continue
        for key, name in VLLM_METRICS.items():
            if line.startswith(name) and line[len(name) : len(name) + 1] in (b"{", b" "):
                try:
                    values[key] += float(line.rsplit(b" ", 1)[1])
                    seen = True
                except (ValueError, IndexError):
                    pass
    if not seen:
        return None
    return EngineLoad(
        running=values["running"], waiting=values["waiting"], kv_cache_usage=values["kv_cache_usage"], at=at
    )


LORA_INFO = b"vllm:lora_requests_info{"
_LABEL = re.compile(rb'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class LoraInfo:
    """``vllm:lora_requests_info``: the slot count and the adapters with requests running or waiting."""

    max_lora: int | None
    in_flight: tuple[str, ...]


def parse_lora_info(text: bytes) -> LoraInfo | None:
    """The current ``vllm:lora_requests_info`` series, or None (no LoRA on the engine).

    vLLM sets a new label set to the current time at each change and never removes the old ones: the
    current state is the series with the largest value.
    """
    best: tuple[float, bytes] | None = None
    for line in text.splitlines():
        if line.startswith(LORA_INFO):
            labels, _, value = line.rpartition(b"}")
            try:
                at = float(value.strip() or b"nan")
            except ValueError:
                continue
            if best is None or at > best[0]:
                best = (at, labels)
    if best is None:
        return None
    found = {k.decode(): v.decode(errors="replace") for k, v in _LABEL.findall(best[1])}
    try:
        max_lora: int | None = int(found.get("max_lora", ""))
    except ValueError:
        max_lora = None
    names = f"{found.get('running_lora_adapters', '')},{found.get('waiting_lora_adapters', '')}"
    return LoraInfo(max_lora, tuple(dict.fromkeys(n for n in names.split(",") if n)))


class LoadScraper:
    def __init__(
        self,
        cluster: Cluster,
        session: aiohttp.ClientSession,
        interval: float,
        metrics: GatewayMetrics,
        placement: AdapterPlacement | None = None,
    ) -> None:
        self._cluster = cluster
        self._session = session
        self._interval = interval
        self._failures = {r: metrics.load_scrape_failures.labels(r) for r in ("error", "status", "too_large")}
        self._placement = placement
        self._too_large: set[str] = set()
        """Replicas whose last answer was too large (logged once while it lasts; pruned as they leave)."""

    async def run(self) -> None:
        while True:
            endpoints = [e for e in self._cluster.endpoints.values() if e.healthy]
            self._too_large &= self._cluster.endpoints.keys()
            await asyncio.gather(*(self.scrape(e.url) for e in endpoints))
            await asyncio.sleep(self._interval)

    async def scrape(self, url: str) -> None:
        """One replica's load (and LoRA info); a failure leaves the old scrape to age out: counted."""
        timeout = aiohttp.ClientTimeout(total=self._interval)
        try:
            async with self._session.get(f"{url}/metrics", timeout=timeout) as resp:
                if resp.status != 200:
                    self._failures["status"].inc()
                    return
                text = await read_bounded(resp, METRICS_BYTES)
        except TooLarge as exc:
            self._failures["too_large"].inc()
            if url not in self._too_large:
                self._too_large.add(url)
                log.warning(
                    "engine /metrics too large: its load is not read", extra={"upstream": url, "error": str(exc)}
                )
            return
        except (aiohttp.ClientError, TimeoutError, OSError):
            self._failures["error"].inc()
            return  # the old scrape ages out; a stale load steers nothing
        self._too_large.discard(url)
        endpoint = self._cluster.endpoints.get(url)
        if endpoint is not None:
            endpoint.load = parse_load(text, monotonic())
            lora = parse_lora_info(text) if self._placement is not None else None
            if lora is not None and self._placement is not None:
                self._placement.observe_lora_info(url, lora.max_lora, lora.in_flight)
