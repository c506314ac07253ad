"""The price table: USD per 1M prompt / completion tokens per model, given or derived from GPU cost.

Price file (YAML)::

    models:
      tiny-llama:                      # a price per 1M tokens, as a provider would quote it
        prompt_per_1m: 0.05
        completion_per_1m: 0.20
      llama-3-70b:                     # or derived: what the GPUs cost / what they serve
        gpu_hour_usd: 4.10             # per GPU
        gpus: 2
        prompt_tokens_per_second: 20000      # measured throughput of one replica (make bench)
        completion_tokens_per_second: 1500
    default:                           # models not listed (optional; else they cost 0)
      prompt_per_1m: 0
      completion_per_1m: 0

Derived: USD per 1M = gpu_hour_usd x gpus / 3600 / tokens_per_second x 1e6. Costs are counted in
integer nano-USD so sums over millions of requests stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

NANO = 1_000_000_000


class ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_per_1m: float | None = Field(None, ge=0)
    completion_per_1m: float | None = Field(None, ge=0)
    gpu_hour_usd: float | None = Field(None, ge=0)
    gpus: int = Field(1, ge=1)
    prompt_tokens_per_second: float | None = Field(None, gt=0)
    completion_tokens_per_second: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_way(self) -> ModelPrice:
        given = self.prompt_per_1m is not None and self.completion_per_1m is not None
        derived = (
            self.gpu_hour_usd is not None
            and self.prompt_tokens_per_second is not None
            and self.completion_tokens_per_second is not None
        )
        if given == derived:
            raise ValueError(
                "give either prompt_per_1m and completion_per_1m, or gpu_hour_usd with"
                " prompt_tokens_per_second and completion_tokens_per_second"
            )
        return self

    def per_1m(self) -> tuple[float, float]:
        if self.prompt_per_1m is not None and self.completion_per_1m is not None:
            return self.prompt_per_1m, self.completion_per_1m
        assert self.gpu_hour_usd is not None and self.prompt_tokens_per_second and self.completion_tokens_per_second
        per_second = self.gpu_hour_usd * self.gpus / 3600
        return (per_second / self.prompt_tokens_per_second * 1e6, per_second / self.completion_tokens_per_second * 1e6)


@dataclass(frozen=True)
class PriceTable:
    # nano-USD per token: (prompt, completion)
    per_token: dict[str, tuple[float, float]] = field(default_factory=dict)
    default: tuple[float, float] = (0.0, 0.0)

    def cost_nano(self, model: str, prompt_tokens: int, completion_tokens: int) -> int:
        p, c = self.per_token.get(model, self.default)
        return round(p * prompt_tokens + c * completion_tokens)

    def usd_per_1m(self, model: str) -> tuple[float, float]:
        p, c = self.per_token.get(model, self.default)
        return p * 1e6 / NANO, c * 1e6 / NANO


def _nano_per_token(price: ModelPrice) -> tuple[float, float]:
    p, c = price.per_1m()
    return p * NANO / 1e6, c * NANO / 1e6


def parse_prices(text: str) -> PriceTable:
    document: Any = yaml.safe_load(text) or {}
    if not isinstance(document, dict):
        raise ValueError("expected a mapping with 'models'")
    try:
        models = {str(name): ModelPrice.model_validate(spec) for name, spec in (document.get("models") or {}).items()}
        default = ModelPrice.model_validate(document["default"]) if "default" in document else None
    except ValidationError as exc:
        raise ValueError(str(exc)) from None
    return PriceTable(
        {name: _nano_per_token(price) for name, price in models.items()},
        _nano_per_token(default) if default is not None else (0.0, 0.0),
    )
