"""Length distributions for prompts, outputs and conversation turns, read from a profile.

A length is written in a profile as a number (fixed) or a mapping:

    {dist: lognormal, median: 200, sigma: 0.9, min: 8, max: 4000}
    {dist: uniform, min: 2, max: 6}

Chat traffic is long-tailed (most prompts and answers are short, a few are very long), which a
lognormal captures with two numbers; ``min``/``max`` clamp the tail so one draw cannot exceed the
model's context.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Length:
    dist: str
    low: int
    high: int
    median: float = 0.0
    sigma: float = 0.0

    def sample(self, rng: random.Random) -> int:
        if self.dist == "fixed":
            return self.low
        if self.dist == "uniform":
            return rng.randint(self.low, self.high)
        value = rng.lognormvariate(math.log(self.median), self.sigma)
        return max(self.low, min(self.high, round(value)))


def parse_length(spec: Any, where: str) -> Length:
    if isinstance(spec, bool):
        raise ValueError(f"{where}: expected a number or a mapping, got {spec!r}")
    if isinstance(spec, int | float):
        n = _positive(spec, where)
        return Length("fixed", n, n)
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a number or a mapping, got {spec!r}")
    dist = spec.get("dist", "lognormal")
    unknown = set(spec) - {"dist", "median", "sigma", "min", "max"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    if dist == "uniform":
        low, high = _positive(spec.get("min"), f"{where}.min"), _positive(spec.get("max"), f"{where}.max")
        if low > high:
            raise ValueError(f"{where}: min {low} > max {high}")
        return Length("uniform", low, high)
    if dist == "lognormal":
        median = _positive(spec.get("median"), f"{where}.median")
        sigma = spec.get("sigma", 1.0)
        if not isinstance(sigma, int | float) or sigma < 0:
            raise ValueError(f"{where}.sigma: expected a number >= 0, got {sigma!r}")
        low = _positive(spec.get("min", 1), f"{where}.min")
        high = _positive(spec.get("max", median * 20), f"{where}.max")
        if not low <= median <= high:
            raise ValueError(f"{where}: need min <= median <= max, got {low}, {median}, {high}")
        return Length("lognormal", low, high, float(median), float(sigma))
    raise ValueError(f"{where}.dist: expected lognormal or uniform, got {dist!r}")


def _positive(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
        raise ValueError(f"{where}: expected a number >= 1, got {value!r}")
    return round(value)
