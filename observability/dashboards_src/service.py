"""Service overview: what clients of the gateway experience, and whether the SLOs hold."""

from __future__ import annotations

from typing import Any

from ..rules_src.recording import CACHE_HIT_RATIO, GATEWAY_HISTOGRAMS, PREFIX_CACHE_HIT_RATIO
from ..rules_src.slo import BUDGET_REMAINING, OBJECTIVE, ratio_name
from .common import MODEL, NS, Board, Q, single, ts

UID = "inferstack-service"
_TTFT_Q, _ITL_Q, _E2E_Q = (record for record, _, _ in GATEWAY_HISTOGRAMS)
_RATE = "$__rate_interval"

_BUDGET_STEPS = [(None, "red"), (0, "orange"), (0.25, "green")]


def _slo_stats(board: Board, slo: str, title: str) -> None:
    sel = f'{{slo="{slo}", {MODEL}}}'
    board.add(single(
        f"{title}: good events, 30 d",
        Q(f"1 - {ratio_name('30d')}{sel}", "{{model}}"),
        unit="percentunit", decimals=2,
        description="Share of good events over 30 days (or since data exists). Red below the objective.",
        thresholds=[(None, "red"), (_objective(slo), "green")],
    ), w=6, h=5)
    board.add(single(
        f"{title}: error budget left",
        Q(f"{BUDGET_REMAINING}{sel}", "{{model}}"),
        unit="percentunit", decimals=1,
        description="Share of the 30-day error budget not yet spent. Negative: the SLO is missed.",
        thresholds=_BUDGET_STEPS,
    ), w=6, h=5)


def _objective(slo: str) -> float:
    from ..rules_src.slo import SLOS

    return next(s.objective for s in SLOS if s.name == slo)


def build() -> dict[str, Any]:
    b = Board(UID, "inferstack / Service overview",
              "Traffic, errors, latency and SLOs as clients of the gateway see them.", ["gateway", "slo"])

    b.row("SLOs")
    _slo_stats(b, "availability", "Availability")
    _slo_stats(b, "ttft", "TTFT < 2 s")
    b.add(ts(
        "Error budget burn rate (1 h window)",
        Q(f"{ratio_name('1h')}{{{MODEL}}} / on (slo) group_left () (1 - {OBJECTIVE})", "{{model}} {{slo}}"),
        description="1 = the budget lasts exactly 30 days. The fast-burn page fires above 14.4 "
                    "(with the 5 m window agreeing).",
        thresholds=[(None, "green"), (6, "orange"), (14.4, "red")],
    ), w=24, h=7)

    b.row("Traffic")
    b.add(ts(
        "Requests per second by status",
        Q(f"sum by (model, status) (rate(inferstack_requests_total{{{MODEL}}}[{_RATE}]))", "{{model}} {{status}}"),
        unit="reqps", stack=True,
    ))
    b.add(ts(
        "Error ratio",
        Q(f'{ratio_name("5m")}{{slo="availability", {MODEL}}}', "{{model}} 5xx"),
        # "or 0 * ...": a ratio of 0 rather than no line when there was no 4xx.
        Q(f'(sum by (model) (rate(inferstack_requests_total{{status=~"4..", {MODEL}}}[{_RATE}]))\n'
          f' or 0 * sum by (model) (rate(inferstack_requests_total{{{MODEL}}}[{_RATE}])))\n'
          f'/ sum by (model) (rate(inferstack_requests_total{{{MODEL}}}[{_RATE}]))', "{{model}} 4xx"),
        unit="percentunit",
        description="5xx are the gateway's or engines' fault (availability SLO); 4xx are the client's, "
                    "including 429 rate-limit rejections.",
    ))
    b.add(ts(
        "In flight and held",
        Q(f"sum by (model) (inferstack_requests_in_flight{{{MODEL}}})", "{{model}} in flight"),
        Q(f"sum by (model) (inferstack_held_requests{{{MODEL}}})", "{{model}} held"),
        description="Held: waiting for a ready replica (scale from zero) or for a free slot on one.",
    ))
    b.add(ts(
        "Rate-limit rejections",
        Q(f"sum by (tenant, limit) (rate(inferstack_rate_limited_total{{{NS}}}[{_RATE}]))", "{{tenant}} {{limit}}"),
        unit="reqps", description="Requests answered 429, by tenant and by the limit that was hit.",
    ))
    b.add(ts(
        "Upstream errors by kind",
        Q(f"sum by (model, kind) (rate(inferstack_upstream_errors_total{{{MODEL}}}[{_RATE}]))", "{{model}} {{kind}}"),
        Q(f"sum by (model) (rate(inferstack_upstream_retries_total{{{MODEL}}}[{_RATE}]))", "{{model}} retried"),
        unit="ops", description="Failed upstream attempts (retried ones too) and retries on another replica.",
    ))
    b.add(ts(
        "Routing decisions",
        Q(f"sum by (policy, reason) (rate(inferstack_routing_decisions_total{{{NS}}}[{_RATE}]))",
          "{{policy}} {{reason}}"),
        unit="ops", stack=True,
        description="prefix_hit vs prefix_miss shows how often shared prefixes land on a warm replica.",
    ))

    b.row("Prefix routing")
    b.add(ts(
        "Prefix-cache hit rate by routing policy",
        Q(f"sum by (policy) (rate(inferstack_routed_cached_prompt_tokens_total{{{NS}}}[{_RATE}]))\n"
          f"/ sum by (policy) (rate(inferstack_routed_prompt_tokens_total{{{NS}}}[{_RATE}]))", "{{policy}}"),
        unit="percentunit", max_=1,
        description="Prompt tokens the engines served from their prefix cache / prompt tokens, per policy "
                    "(usage.prompt_tokens_details.cached_tokens, reported per request by vLLM).",
    ))
    b.add(ts(
        "Prefix-cache hit rate by replica",
        Q(f"{PREFIX_CACHE_HIT_RATIO}{{{NS}}}", "{{instance}}"),
        unit="percentunit", max_=1,
        description="vllm:prefix_cache_hits / queries per engine replica, whatever routed the traffic.",
    ))
    b.add(ts(
        "KV index: blocks and staleness",
        Q(f"sum(inferstack_kv_index_blocks{{{NS}}})", "blocks indexed"),
        Q(f"sum(inferstack_kv_index_capacity{{{NS}}})", "capacity"),
        Q(f"sum by (replica) (inferstack_kv_index_replica_blocks{{{NS}}})", "{{replica}}"),
        description="Block hashes the gateway's KV-event index holds, and per replica. precise_prefix only.",
    ))
    b.add(ts(
        "KV event lag (p90)",
        Q(f"histogram_quantile(0.9, sum by (le) (rate(inferstack_kv_event_lag_seconds_bucket{{{NS}}}[{_RATE}])))",
          "p90 lag"),
        unit="s",
        description="Engine publishing a KV event batch to the gateway applying it.",
    ))
    b.add(ts(
        "KV views stale, resyncs",
        Q(f"max by (replica) (inferstack_kv_index_stale{{{NS}}})", "stale {{replica}}"),
        Q(f"sum by (reason) (increase(inferstack_kv_index_resyncs_total{{{NS}}}[{_RATE}]))", "resync {{reason}}"),
        description="Stale (1, per replica, on any gateway pod): a replica owes events for longer than "
                    "stale_after (or has sent none yet); it is scored as holding nothing, and with no fresh "
                    "view at all requests fall back to prefix_affinity. Resyncs: views dropped on a gap, "
                    "an engine restart or a cache clear.",
    ))
    b.add(ts(
        "KV event silence by replica",
        Q(f"max by (replica) (inferstack_kv_events_silence_seconds{{{NS}}})", "{{replica}}"),
        unit="s",
        description="Seconds since each replica's last KV event batch, the longest over gateway pods (-1: none "
                    "yet). An idle engine is silent: this alone is no fault; it is stale only when it owes events.",
    ))
    b.add(ts(
        "precise_prefix: /tokenize",
        Q(f"histogram_quantile(0.9, sum by (le) (rate(inferstack_kv_tokenize_seconds_bucket{{{NS}}}[{_RATE}])))",
          "p90 seconds"),
        Q(f"sum by (outcome) (rate(inferstack_kv_tokenize_seconds_count{{{NS}}}[{_RATE}]))", "{{outcome}} per s"),
        description="The engine's /tokenize call precise_prefix makes before it picks (it adds to TTFT); "
                    "failed: the request fell back to prefix_affinity (reason no_tokens).",
    ))
    b.add(ts(
        "precise_prefix: the gateways' own tokenizer",
        Q(f"sum by (model) (inferstack_kv_tokenizer_local{{{NS}}})", "local {{model}}"),
        Q(f"count by (model) (inferstack_kv_tokenizer_local{{{NS}}})", "configured {{model}}"),
        Q(f"sum by (model, outcome) (increase(inferstack_kv_tokenizer_checks_total{{{NS}}}[{_RATE}]))",
          "check {{outcome}} {{model}}"),
        description="Gateway pods tokenizing each model themselves (local) out of those configured for it; "
                    "fewer: files that did not load, a model on probation (its first checks), or switched "
                    "off after a check that differed (alerts InferstackLocalTokenizerFallback, "
                    "InferstackLocalTokenizerDiffers). Checks: the gateway's ids compared with an engine's "
                    "/tokenize (same, differ, failed: no answer in time).",
    ))
    b.add(ts(
        "KV events per second",
        Q(f"sum by (type) (rate(inferstack_kv_events_total{{{NS}}}[{_RATE}]))", "{{type}}"),
        Q(f"sum(rate(inferstack_kv_event_batches_malformed_total{{{NS}}}[{_RATE}]))", "malformed"),
        Q(f"sum(rate(inferstack_kv_event_resubscribes_total{{{NS}}}[{_RATE}]))", "resubscribed"),
        unit="ops",
        description="Malformed: messages skipped (the subscription goes on). Resubscribed: a connection "
                    "dropped (an engine gone, or a message over max_message_bytes, after which ZMQ does not "
                    "reconnect by itself) and subscribed again.",
    ))

    b.row("Latency")
    for title, record, desc in (
        ("Time to first token", _TTFT_Q, "Request received to the first token-carrying event sent (streams)."),
        ("Inter-token latency", _ITL_Q, "Gap between content events on a stream."),
        ("End-to-end latency", _E2E_Q, "Request received to last byte sent."),
    ):
        b.add(ts(title, Q(f"{record}{{{MODEL}}}", "{{model}} p{{quantile}}"), unit="s", description=desc))

    b.row("Tokens and cache")
    b.add(ts(
        "Tokens per second",
        Q(f"sum by (model) (rate(inferstack_prompt_tokens_total{{{MODEL}}}[{_RATE}]))", "{{model}} in (prompt)"),
        Q(f"sum by (model) (rate(inferstack_completion_tokens_total{{{MODEL}}}[{_RATE}]))",
          "{{model}} out (completion)"),
        description="From the engines' usage reports, streams included.",
    ), w=12)
    b.add(ts(
        "Response cache hit ratio",
        Q(f"{CACHE_HIT_RATIO}{{{NS}}}", "hit ratio"),
        unit="percentunit", max_=1,
        description="Hits / (hits + misses) of the gateway's response cache; bypassed requests not counted.",
    ), w=12)
    return b.json()
