"""The gateway's own metrics. Names, labels and meanings: docs/metrics.md.

One ``GatewayMetrics`` per app, on its own registry (no global state, so tests can build many apps).
Label children are cached: ``labels()`` takes a lock and builds a tuple on every call, which shows
up on the hot path. The counters and histograms every request touches are added to through
``Tally`` and ``observe``, which skip what prometheus_client checks on every call.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_left
from typing import Any, ClassVar, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from .. import __version__

TTFT_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1,
    1.5,
    2,
    3,
    5,
    7.5,
    10,
    20,
    30,
    60,
)
ITL_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.015,
    0.02,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    1,
    2.5,
)
M = TypeVar("M", Counter, Gauge, Histogram)

DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "inferstack_requests",
            "Requests answered, by final status.",
            ["model", "endpoint", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "inferstack_request_duration_seconds",
            "Request received to last byte sent.",
            ["model", "endpoint"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "inferstack_time_to_first_token_seconds",
            "Request received to the first token-carrying event sent.",
            ["model", "endpoint"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "inferstack_inter_token_latency_seconds",
            "Gap between token-carrying events sent on a stream.",
            ["model", "endpoint"],
            buckets=ITL_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "inferstack_prompt_tokens",
            "Prompt tokens from the upstream's usage.",
            ["model", "tenant"],
            registry=r,
        )
        self.completion_tokens = Counter(
            "inferstack_completion_tokens",
            "Completion tokens from the upstream's usage.",
            ["model", "tenant"],
            registry=r,
        )
        self.in_flight = Gauge("inferstack_requests_in_flight", "Requests being served.", ["model"], registry=r)
        self.upstream_errors = Counter(
            "inferstack_upstream_errors", "Failed upstream attempts by kind.", ["model", "kind"], registry=r
        )
        self.retries = Counter(
            "inferstack_upstream_retries",
            "Attempts retried on another replica before the first byte.",
            ["model"],
            registry=r,
        )
        self.retry_budget_exhausted = Counter(
            "inferstack_retry_budget_exhausted",
            "Retries not made because the retry budget was spent (the request failed instead).",
            ["model"],
            registry=r,
        )
        self.background_task_failures = Counter(
            "inferstack_background_task_failures",
            "Lifespan tasks (discovery, scrapers, watchers) that ended while the gateway ran; /healthz fails.",
            ["task"],
            registry=r,
        )
        self.discovery_errors = Counter(
            "inferstack_discovery_errors",
            "Discovery lookups that failed (DNS, the Kubernetes API); the last set of replicas is kept.",
            ["provider"],
            registry=r,
        )
        self.load_scrape_failures = Counter(
            "inferstack_upstream_load_scrape_failures",
            "Engine /metrics scrapes that gave no load, by reason (error, status, too_large): that replica's"
            " load ages out and routing falls back to in-flight counts.",
            ["reason"],
            registry=r,
        )
        for reason in ("error", "status", "too_large"):
            self.load_scrape_failures.labels(reason)  # series from 0: one born at its first sample shows no rate
        self.replicas = Gauge(
            "inferstack_upstream_replicas", "Replicas per model by state.", ["model", "state"], registry=r
        )
        self.ejections = Counter(
            "inferstack_upstream_ejections", "Replicas ejected by outlier detection.", ["model"], registry=r
        )
        self.held = Gauge(
            "inferstack_held_requests",
            "Requests waiting for capacity or a ready replica.",
            ["model"],
            registry=r,
        )
        self.demand = Gauge(
            "inferstack_model_demand",
            "Held plus in-flight requests per model (scale-from-zero signal).",
            ["model"],
            registry=r,
        )
        self.routing_decisions = Counter(
            "inferstack_routing_decisions",
            "Routing decisions by policy and reason.",
            ["policy", "reason"],
            registry=r,
        )
        self.routed_prompt_tokens = Counter(
            "inferstack_routed_prompt_tokens",
            "Prompt tokens of answered requests, by routing policy.",
            ["policy"],
            registry=r,
        )
        self.routed_cached_tokens = Counter(
            "inferstack_routed_cached_prompt_tokens",
            "Of those, the tokens the engine served from its prefix cache (usage.prompt_tokens_details).",
            ["policy"],
            registry=r,
        )
        self.rate_limited = Counter(
            "inferstack_rate_limited",
            "Requests rejected with 429, by limit.",
            ["tenant", "limit"],
            registry=r,
        )
        self.adapter_decisions = Counter(
            "inferstack_adapter_routing_decisions",
            "Routing decisions for adapter requests: loaded, free_slot, least_loaded, capped, unknown_state.",
            ["model", "reason"],
            registry=r,
        )
        self.adapter_loads = Counter(
            "inferstack_adapter_loads",
            "Adapter loads the gateway caused: runtime_load (it loaded the adapter) or swap (predicted reload).",
            ["model", "adapter", "kind"],
            registry=r,
        )
        self.adapter_load_failures = Counter(
            "inferstack_adapter_load_failures",
            "Runtime adapter loads that failed: status, timeout, connect.",
            ["model", "adapter", "reason"],
            registry=r,
        )
        self.adapter_load_duration = Histogram(
            "inferstack_adapter_load_duration_seconds",
            "The gateway's runtime adapter loads (POST /v1/load_lora_adapter).",
            ["model"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.adapter_replicas = Gauge(
            "inferstack_adapter_replicas",
            "Replicas the gateway believes hold the adapter resident.",
            ["model", "adapter"],
            registry=r,
        )
        self.model_info = Gauge(
            "inferstack_model_info",
            "1 per catalogued served name: its base model and adapter (empty for a base model).",
            ["model", "base_model", "adapter"],
            registry=r,
        )
        build = Gauge("inferstack_build_info", "Always 1.", ["version"], registry=r)
        build.labels(__version__).set(1)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._tallies: dict[tuple[int, tuple[str, ...]], Tally] = {}
        self._done: dict[tuple[str, str, int], tuple[Tally, Histogram]] = {}

    def child(self, metric: M, *labels: str) -> M:
        """``metric.labels(*labels)``, cached (label values are bounded; see the module docstring)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return cast(M, found)

    def drop(self, metric: MetricWrapperBase, *labels: str) -> None:
        """Remove the series ``labels`` of ``metric`` (and its cached child): a name forgotten for good."""
        self._children.pop((id(metric), labels), None)
        with contextlib.suppress(KeyError):
            metric.remove(*labels)

    def tally(self, counter: Counter, *labels: str) -> Tally:
        """``Tally(counter.labels(*labels))``, cached like ``child``."""
        key = (id(counter), labels)
        found = self._tallies.get(key)
        if found is None:
            found = self._tallies[key] = Tally(self.child(counter, *labels))
        return found

    def routed_prompt(self, policy: str, prompt: int, details: object) -> None:
        """A policy's prompt tokens and, when the engine reports them, its prefix-cache hits."""
        self.tally(self.routed_prompt_tokens, policy).inc(prompt)
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        if isinstance(cached, int):
            self.tally(self.routed_cached_tokens, policy).inc(cached)

    def request_done(self, model: str, endpoint: str, status: int, duration: float) -> None:
        # Both children under one key of the request's own values: one lookup, no label tuple or str().
        key = (model, endpoint, status)
        found = self._done.get(key)
        if found is None:
            found = self._done[key] = (
                self.tally(self.requests, model, endpoint, str(status)),
                self.child(self.duration, model, endpoint),
            )
        found[0].inc()
        observe(found[1], duration)


class Tally:
    """A labelled counter child, incremented as ``Counter.inc`` does without the checks it repeats on
    every call but the sign (that the metric is a child and not a parent missing its labels: true by
    construction, the constructor reads the child's value; exemplars: none here). Two Python calls
    an increment instead of four; a request makes six or seven."""

    __slots__ = ("_value",)

    def __init__(self, child: Counter) -> None:
        self._value = child._value

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self._value.inc(amount)


def observe(child: Histogram, value: float) -> None:
    """``child.observe(value)`` for a labelled child: the same bucket (the first whose upper bound is >=
    ``value``), found by bisection instead of a walk over the bounds, and without the per-call check
    that it is a child. Like ``HistogramBatch``, it uses prometheus_client's ``_upper_bounds``,
    ``_buckets`` and ``_sum`` (service/tests/test_metrics_batch.py checks the exposition is observe's)."""
    child._sum.inc(value)
    child._buckets[bisect_left(child._upper_bounds, value)].inc(1)


class HistogramBatch:
    """Observations of one histogram child, gathered as plain numbers and added to it in one go.

    A stream observes its inter-token gaps per event; ``Histogram.observe`` takes a lock and walks
    the buckets each time. Here an observation is a bisect and two additions; ``flush`` (at the end
    of the stream, and every ``FLUSH_EVERY`` observations so a long stream shows up while it runs)
    adds the counts to the child's buckets and sum. The same bucket rule as ``observe``: the first
    bucket whose upper bound is >= the value. Uses prometheus_client's ``_upper_bounds``,
    ``_buckets`` and ``_sum`` (service/tests/test_metrics_batch.py checks the exposition equals observe's).
    """

    FLUSH_EVERY: ClassVar[int] = 256
    __slots__ = ("_bounds", "_child", "_counts", "_pending", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self._bounds: list[float] = child._upper_bounds
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._pending = 0

    def observe(self, value: float, times: int = 1) -> None:
        self._counts[bisect_left(self._bounds, value)] += times
        self._sum += value * times
        self._pending += times
        if self._pending >= self.FLUSH_EVERY:
            self.flush()

    def observe_all(self, values: list[float]) -> None:
        """``observe`` of each value in turn, in one call: a caller that gathers its values in a list
        pays an append per value instead of a call."""
        counts, bounds, total = self._counts, self._bounds, self._sum
        for value in values:
            counts[bisect_left(bounds, value)] += 1
            total += value
        self._sum = total
        self._pending += len(values)
        if self._pending >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        buckets = self._child._buckets
        counts = self._counts
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)
                counts[i] = 0
        self._child._sum.inc(self._sum)
        self._sum = 0.0
        self._pending = 0
