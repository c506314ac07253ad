"""Metrics of the KV-event index (docs/metrics.md): counted as events arrive, the rest read at scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .index import KVIndex
from .wire import AllBlocksCleared, Batch, BlockRemoved, BlockStored

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LOCAL_TOKENIZE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


class KVMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "inferstack_kv_events", "KV-cache events applied to the index, by type.", ["type"], registry=registry
        )
        self._stored = self.events.labels("BlockStored")
        self._removed = self.events.labels("BlockRemoved")
        self._cleared = self.events.labels("AllBlocksCleared")
        self.malformed = Counter(
            "inferstack_kv_event_batches_malformed",
            "KV event messages that could not be decoded or applied.",
            registry=registry,
        )
        self.resubscribes = Counter(
            "inferstack_kv_event_resubscribes",
            "KV event connections dropped (a protocol error such as an oversized message, or the engine"
            " gone) and subscribed again.",
            registry=registry,
        )
        self.lag = Histogram(
            "inferstack_kv_event_lag_seconds",
            "From the engine publishing a KV event batch to the gateway applying it (wall clocks).",
            buckets=LAG_BUCKETS,
            registry=registry,
        )

    def batch(self, batch: Batch, lag: float) -> None:
        """A batch applied, or a part of one (its lag observed once, a split event counted once)."""
        if batch.part == 0:
            self.lag.observe(lag)
        for e in batch.events:
            if isinstance(e, BlockStored):
                if not e.continued:
                    self._stored.inc()
            elif isinstance(e, BlockRemoved):
                if not e.continued:
                    self._removed.inc()
            elif isinstance(e, AllBlocksCleared):
                self._cleared.inc()


class TokenizerMetrics:
    """The gateway's own tokenizer and its checks against the engine (``tokenizer_guard``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.checks = Counter(
            "inferstack_kv_tokenizer_checks",
            "The gateway's token ids compared with the engine's /tokenize, by model and outcome (same;"
            " differ: the local tokenizer is then off for the model; failed: no answer).",
            ["model", "outcome"],
            registry=registry,
        )
        self.local = Gauge(
            "inferstack_kv_tokenizer_local",
            "1 while a model's requests are tokenized in the gateway (past its checks), 0 otherwise.",
            ["model"],
            registry=registry,
        )
        self.busy = Counter(
            "inferstack_kv_local_tokenizer_busy",
            "Long prompts that found no tokenizer thread free in time (thread_wait): asked of /tokenize instead.",
            registry=registry,
        )
        self.seconds = Histogram(
            "inferstack_kv_local_tokenize_seconds",
            "Time to render and tokenize a request in the gateway (precise_prefix routing).",
            buckets=LOCAL_TOKENIZE_BUCKETS,
            registry=registry,
        )

    def model(self, model: str, local: bool) -> None:
        self.local.labels(model).set(1 if local else 0)
        for outcome in ("same", "differ", "failed"):
            self.checks.labels(model, outcome)  # series from 0: one born at its first sample shows no rate


class IndexCollector(Collector):
    """Index size, per-replica blocks, silence and staleness, and resyncs: read when scraped."""

    def __init__(self, index: KVIndex) -> None:
        self._index = index

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        index, now = self._index, time.monotonic()
        yield GaugeMetricFamily("inferstack_kv_index_blocks", "Block hashes in the KV index.", value=len(index))
        yield GaugeMetricFamily(
            "inferstack_kv_index_capacity", "Block hashes the KV index keeps at most.", value=index.capacity
        )
        held = GaugeMetricFamily(
            "inferstack_kv_index_replica_blocks", "Blocks the index credits to each replica.", labels=["replica"]
        )
        silent = GaugeMetricFamily(
            "inferstack_kv_events_silence_seconds",
            "Seconds since each replica's last KV event batch (-1: none yet).",
            labels=["replica"],
        )
        stale = GaugeMetricFamily(
            "inferstack_kv_index_stale",
            "1 when a replica's view is not trusted (no events yet, or owed events for too long).",
            labels=["replica"],
        )
        for url, view in index.replicas.items():
            held.add_metric([url], len(view.held))
            silent.add_metric([url], -1 if view.last_event is None else now - view.last_event)
            stale.add_metric([url], 0 if index.fresh(url, now) else 1)
        yield held
        yield silent
        yield stale
        resyncs = CounterMetricFamily(
            "inferstack_kv_index_resyncs", "Replica views dropped and rebuilt, by cause.", labels=["reason"]
        )
        for reason, count in index.resyncs.items():
            resyncs.add_metric([reason], count)
        yield resyncs
        yield CounterMetricFamily(
            "inferstack_kv_index_evicted", "Block hashes dropped by the index's LRU bound.", value=index.evicted
        )
