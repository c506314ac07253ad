"""Cost and tenants: spend from the gateway's price table, GPU fleet cost from Karpenter's price
estimates, tokens and budgets per tenant."""

from __future__ import annotations

from typing import Any

from ..conventions import TENANT_BUDGET_WARN
from ..rules_src.recording import COST_PER_MILLION_TOKENS, GPU_FLEET_COST
from .common import MODEL, NS, Board, Q, single, ts

UID = "inferstack-cost"
_RATE = "$__rate_interval"
_TOKENS_1H = (f"(sum(rate(inferstack_prompt_tokens_total{{{NS}}}[1h]))"
              f" + sum(rate(inferstack_completion_tokens_total{{{NS}}}[1h])))")


def build() -> dict[str, Any]:
    b = Board(UID, "inferstack / Cost and tenants",
              "What serving costs, per model and per tenant, and how much of each budget is used.",
              ["cost", "tenants"])

    b.row("Spend")
    b.add(single("Billed USD per hour",
                 Q(f"sum(rate(inferstack_cost_usd_total{{{MODEL}}}[5m])) * 3600"), unit="currencyUSD",
                 decimals=2, description="Spend from the gateway's price table (INFERSTACK_PRICES_FILE)."),
          w=6, h=4)
    b.add(single("GPU fleet USD per hour", Q(f"sum({GPU_FLEET_COST})"), unit="currencyUSD", decimals=2,
                 description="Karpenter's price estimate of every GPU node it runs (cluster-wide)."), w=6, h=4)
    b.add(single("GPU cost per 1M tokens",
                 Q(f"1e6 * sum({GPU_FLEET_COST}) / (3600 * {_TOKENS_1H})"), unit="currencyUSD", decimals=3,
                 description="Fleet cost divided by tokens served over the last hour: what a token "
                             "really costs. Falls as utilisation rises."), w=6, h=4)
    b.add(single("Billed USD per 1M tokens",
                 Q(f"sum({COST_PER_MILLION_TOKENS}{{{MODEL}}})"), unit="currencyUSD", decimals=3,
                 description="Average price charged over the last hour."), w=6, h=4)
    b.add(ts("USD per hour by model",
             Q(f"sum by (model) (rate(inferstack_cost_usd_total{{{MODEL}}}[{_RATE}])) * 3600", "{{model}} billed"),
             Q(f"{GPU_FLEET_COST}", "GPU nodes {{nodepool}}"),
             unit="currencyUSD"), w=12)
    b.add(ts("USD per 1M tokens by model", Q(f"{COST_PER_MILLION_TOKENS}{{{MODEL}}}", "{{model}}"),
             unit="currencyUSD"), w=12)

    b.row("Tenants")
    b.add(ts("Tokens per second by tenant",
             Q(f"sum by (tenant) (rate(inferstack_prompt_tokens_total{{{MODEL}}}[{_RATE}]))\n"
               f"+ sum by (tenant) (rate(inferstack_completion_tokens_total{{{MODEL}}}[{_RATE}]))", "{{tenant}}"),
             stack=True))
    b.add(ts("USD per hour by tenant",
             Q(f"sum by (tenant) (rate(inferstack_cost_usd_total{{{MODEL}}}[{_RATE}])) * 3600", "{{tenant}}"),
             unit="currencyUSD", stack=True))
    b.add(ts("Monthly budget used",
             Q(f"max by (tenant) (inferstack_tenant_budget_used_ratio{{{NS}}})", "{{tenant}}"),
             unit="percentunit",
             thresholds=[(None, "green"), (TENANT_BUDGET_WARN, "orange"), (1, "red")],
             description="At 100 % the gateway answers the tenant 429 (limit=budget)."))
    return b.json()
