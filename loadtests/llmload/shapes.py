"""Load shapes, chosen by name: how many users run at each moment of the test.

Every shape is a list of stages; ``tick`` answers locust's question "how many users now, spawned
how fast?" and ``None`` ends the test.

- ``steady``: ramp to ``users`` over ``ramp`` seconds, hold until ``duration``.
- ``step``: ``steps`` equal stages from ``users / steps`` up to ``users``: each stage holds long
  enough to see the autoscaler react (HPA/KEDA add replicas, Karpenter adds nodes).
- ``spike``: ``users`` as a baseline, jump to ``spike_users`` at ``spike_at`` for
  ``spike_seconds``, back to the baseline: watch the hold queue and the recovery.
- ``soak``: ``users`` for a long ``duration`` (default 1 h) after a gentle ramp: leaks and slow drift.

Durations are seconds or strings with a unit: ``90``, ``"90s"``, ``"10m"``, ``"2h"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SHAPES = ("steady", "step", "spike", "soak")


@dataclass(frozen=True)
class Stage:
    until: float  # seconds since the start of the test
    users: int
    spawn_rate: float


@dataclass(frozen=True)
class Shape:
    name: str
    stages: tuple[Stage, ...]

    @property
    def duration(self) -> float:
        return self.stages[-1].until

    @property
    def peak_users(self) -> int:
        return max(stage.users for stage in self.stages)

    def tick(self, run_time: float) -> tuple[int, float] | None:
        for stage in self.stages:
            if run_time < stage.until:
                return stage.users, stage.spawn_rate
        return None


def build_shape(spec: dict[str, Any], users: int | None = None, duration: float | None = None) -> Shape:
    """A shape from a profile's ``shape:`` mapping; ``users``/``duration`` override the profile's
    (``users`` the peak, ``duration`` the length, timings inside the shape scaled to it)."""
    spec = dict(spec)
    name = spec.pop("name", "steady")
    if duration is not None:
        if "duration" in spec:
            # A shorter (or longer) run keeps the shape's proportions: its spike and ramp scale too.
            factor = duration / parse_seconds(spec["duration"], f"shape ({name}).duration")
            for key in ("spike_at", "spike_seconds", "ramp"):
                if key in spec:
                    spec[key] = parse_seconds(spec[key], f"shape ({name}).{key}") * factor
        spec["duration"] = duration
    builders = {"steady": _steady, "step": _step, "spike": _spike, "soak": _soak}
    if name not in builders:
        raise ValueError(f"shape.name: expected one of {', '.join(SHAPES)}, got {name!r}")
    params = _Params(spec, f"shape ({name})")
    shape = Shape(name, builders[name](params))
    params.reject_unknown()
    return shape if users is None else _scale_users(shape, users)


def _scale_users(shape: Shape, peak: int) -> Shape:
    """The same shape with ``peak`` users at its highest point (every stage and rate scaled)."""
    if peak < 1:
        raise ValueError(f"users: expected an integer >= 1, got {peak}")
    factor = peak / shape.peak_users
    stages = tuple(
        Stage(s.until, max(1, round(s.users * factor)), max(0.1, s.spawn_rate * factor)) for s in shape.stages
    )
    return Shape(shape.name, stages)


class _Params:
    def __init__(self, spec: dict[str, Any], where: str) -> None:
        self.spec, self.where = spec, where
        self.used: set[str] = set()

    def users(self, key: str, default: int | None = None) -> int:
        self.used.add(key)
        value = self.spec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{self.where}.{key}: expected an integer >= 1, got {value!r}")
        return value

    def seconds(self, key: str, default: float | str | None = None) -> float:
        self.used.add(key)
        value = parse_seconds(self.spec.get(key, default), f"{self.where}.{key}")
        if key == "duration" and value <= 0:
            raise ValueError(f"{self.where}.duration: must be > 0")
        return value

    def reject_unknown(self) -> None:
        unknown = set(self.spec) - self.used
        if unknown:
            raise ValueError(f"{self.where}: unknown keys {sorted(unknown)}")


def _rate(users: int, ramp: float) -> float:
    return users / ramp if ramp > 0 else float(users)


def _steady(p: _Params) -> tuple[Stage, ...]:
    users, duration = p.users("users"), p.seconds("duration")
    return (Stage(duration, users, _rate(users, p.seconds("ramp", 0))),)


def _soak(p: _Params) -> tuple[Stage, ...]:
    users, duration = p.users("users"), p.seconds("duration", "1h")
    return (Stage(duration, users, _rate(users, p.seconds("ramp", 60))),)


def _step(p: _Params) -> tuple[Stage, ...]:
    users, duration, steps = p.users("users"), p.seconds("duration"), p.users("steps", 5)
    length = duration / steps
    # Each step adds its users over a tenth of the step, so most of the step runs at full load.
    return tuple(
        Stage(length * i, max(1, math.ceil(users * i / steps)), _rate(max(1, math.ceil(users / steps)), length / 10))
        for i in range(1, steps + 1)
    )


def _spike(p: _Params) -> tuple[Stage, ...]:
    users, duration = p.users("users"), p.seconds("duration")
    peak = p.users("spike_users", users * 5)
    start = p.seconds("spike_at", duration / 3)
    length = p.seconds("spike_seconds", duration / 6)
    if start + length >= duration:
        raise ValueError(f"{p.where}: spike_at + spike_seconds must end before duration ({duration:.0f} s)")
    base_rate = _rate(users, p.seconds("ramp", 0))
    # The spike arrives within a second: that is what makes it a spike.
    return (
        Stage(start, users, base_rate),
        Stage(start + length, peak, float(peak)),
        Stage(duration, users, float(peak)),
    )


def parse_seconds(value: Any, where: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    if isinstance(value, str) and value and value[-1] in units:
        number, unit = value[:-1], units[value[-1]]
    else:
        number, unit = value, 1
    try:
        seconds = float(number) * unit
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected seconds (90, '90s', '10m', '2h'), got {value!r}") from None
    if isinstance(value, bool) or math.isnan(seconds) or seconds < 0:
        raise ValueError(f"{where}: expected seconds >= 0, got {value!r}")
    return seconds
