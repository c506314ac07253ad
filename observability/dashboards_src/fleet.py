"""Models and adapters: one dashboard for the whole fleet, the `model` variable picks base models.

Each panel shows the chosen base model and every adapter version served on it (`sql-bot@v3`), one
series per served name. The gateway labels requests, tokens, cost, demand and TTFT with the served
name in `model`; which base model an adapter version belongs to comes from
`inferstack_model_info{model, base_model, adapter}` (one series per catalogued served name), joined
on `model`. Without a catalog there is no info series: the panels then show the base model's own
series (the `or` branch), so a gateway without adapters reads the same as before.
"""

from __future__ import annotations

from typing import Any

from .common import MODEL, NS, Board, Q, single, ts

UID = "inferstack-fleet"
_RATE = "$__rate_interval"
# One info series per served name and namespace, whatever the number of gateway replicas exporting it.
_INFO = f'max by (namespace, model) (inferstack_model_info{{{NS}, base_model=~"$model"}})'


def _served(inner: str, by: str = "model") -> str:
    """`inner` is a per-(namespace, model[, ...]) expression over every served name: keep the chosen
    base models and their adapter versions (the info join), then sum by `by`."""
    return f"sum by ({by}) (\n  ({inner})\n  * on (namespace, model) group_left () {_INFO}\n)"


def _per_name(metric: str, extra_by: str = "") -> str:
    """rate() of a counter per served name of the chosen base models (and their adapters)."""
    by = f"namespace, model{extra_by}"
    inner = f"sum by ({by}) (rate({metric}{{{NS}}}[{_RATE}]))"
    plain = f"sum by (model{extra_by}) (rate({metric}{{{MODEL}}}[{_RATE}]))"
    # Parenthesised: `or` binds looser than arithmetic on the result.
    return f"(\n{_served(inner, f'model{extra_by}')}\nor\n{plain}\n)"


def build() -> dict[str, Any]:
    b = Board(
        UID,
        "inferstack / Models and adapters",
        "The fleet per base model (variable `model`) and per adapter version served on it: requests, "
        "tokens, cost, demand, TTFT, adapter loads, placement and routing decisions.",
        ["fleet", "adapters", "lora"],
    )

    b.row("Now")
    b.add(single("Requests per second", Q(f"sum({_per_name('inferstack_requests_total')})"), decimals=2), w=6, h=4)
    b.add(
        single(
            "Demand (held + in flight)",
            Q(
                f"sum({_served(f'sum by (namespace, model) (inferstack_model_demand{{{NS}}})')}"
                f"\nor\nsum by (model) (inferstack_model_demand{{{MODEL}}}))"
            ),
            description="What KEDA scales the base model's engines on: its own demand plus its adapters'.",
        ),
        w=6,
        h=4,
    )
    b.add(
        single(
            "Billed USD per hour",
            Q(f"sum({_per_name('inferstack_cost_usd_total')}) * 3600"),
            unit="currencyUSD",
            decimals=2,
            description="From the price table; an adapter costs what its base model costs.",
        ),
        w=6,
        h=4,
    )
    b.add(
        single(
            "Adapter versions resident",
            Q(f'count(max by (adapter) (inferstack_adapter_replicas{{{MODEL}}}) > 0) or vector(0)'),
            description="Adapter versions the gateway believes at least one replica of the model holds.",
        ),
        w=6,
        h=4,
    )

    b.row("Per served name: the model and each of its adapters")
    b.add(ts("Requests per second", Q(_per_name("inferstack_requests_total"), "{{model}}"), stack=True), w=12)
    b.add(
        ts(
            "Tokens per second",
            Q(
                f"{_per_name('inferstack_prompt_tokens_total')}\n+ on (model)\n"
                f"{_per_name('inferstack_completion_tokens_total')}",
                "{{model}}",
            ),
            stack=True,
            description="Prompt plus completion tokens, from the engines' usage.",
        ),
        w=12,
    )
    b.add(
        ts(
            "USD per hour",
            Q(f"({_per_name('inferstack_cost_usd_total')}) * 3600", "{{model}}"),
            unit="currencyUSD",
            stack=True,
        ),
        w=12,
    )
    b.add(
        ts(
            "Demand (held + in flight)",
            Q(
                f"{_served(f'sum by (namespace, model) (inferstack_model_demand{{{NS}}})')}"
                f"\nor\nsum by (model) (inferstack_model_demand{{{MODEL}}})",
                "{{model}}",
            ),
            stack=True,
            description="A request for an adapter counts as demand for the adapter version; the base "
            "model's ScaledObject adds them up, so adapter traffic wakes its base model from zero.",
        ),
        w=12,
    )
    ttft = (
        f"sum by (namespace, model, le) (rate(inferstack_time_to_first_token_seconds_bucket{{{NS}}}[{_RATE}]))"
    )
    b.add(
        ts(
            "Time to first token, p90",
            Q(
                f"histogram_quantile(0.9, {_served(ttft, 'model, le')})\nor\nhistogram_quantile(0.9, sum by "
                f"(model, le) (rate(inferstack_time_to_first_token_seconds_bucket{{{MODEL}}}[{_RATE}])))",
                "{{model}}",
            ),
            unit="s",
            description="Measured at the gateway: includes holds while an engine starts and adapter loads.",
        ),
        w=12,
    )

    b.row("Adapters: loads, placement, routing")
    b.add(
        ts(
            "Adapter loads per minute",
            Q(
                f"sum by (adapter, kind) (rate(inferstack_adapter_loads_total{{{MODEL}}}[{_RATE}])) * 60",
                "{{adapter}} {{kind}}",
            ),
            stack=True,
            description="runtime_load: the gateway loaded the adapter onto a replica. swap: sent to a replica "
            "that had evicted it (vLLM reloads it, evicting another). Many loads: more hot adapters than "
            "slots (raise lora.max_loras or the model's replicas).",
        ),
        w=12,
    )
    b.add(
        ts(
            "Routing decisions for adapter requests",
            Q(
                _served(
                    f"sum by (namespace, model, reason) (rate(inferstack_adapter_routing_decisions_total{{{NS}}}"
                    f"[{_RATE}]))",
                    "reason",
                ),
                "{{reason}}",
            ),
            stack=True,
            unit="reqps",
            description="loaded: a replica held it. free_slot: one had an empty slot. least_loaded: none did "
            "(a load and an eviction). capped: a holder was skipped as too busy. unknown_state: the "
            "replica's slots were unknown.",
        ),
        w=12,
    )
    b.add(
        ts(
            "Replicas holding each adapter version",
            Q(f"max by (adapter) (inferstack_adapter_replicas{{{MODEL}}})", "{{adapter}}"),
            description="The gateway's record of placement (what the engines list, plus what it sent).",
        ),
        w=12,
    )
    b.add(
        ts(
            "Adapter load time, p90",
            Q(
                "histogram_quantile(0.9, sum by (model, le) "
                f"(rate(inferstack_adapter_load_duration_seconds_bucket{{{MODEL}}}[{_RATE}])))",
                "{{model}}",
            ),
            unit="s",
            description="POST /v1/load_lora_adapter as the gateway timed it; the request waits for it.",
        ),
        w=12,
    )
    return b.json()
