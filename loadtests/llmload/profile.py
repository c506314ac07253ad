"""A profile: what the users do (scenarios, models, request options) and how many there are (shape).

Profiles are YAML files in ``loadtests/profiles/``, chosen by name (``--profile chat``) or path.
``load_profile`` validates everything up front so a typo fails before any traffic is sent, with
the offending key in the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .lengths import Length, parse_length
from .shapes import Shape, build_shape, parse_seconds

LOADTESTS = Path(__file__).resolve().parents[1]
PROFILES = LOADTESTS / "profiles"

# Scenario kinds, each run by its own locust User class (see locustfile.py).
KINDS = ("chat", "conversation", "long_context")


@dataclass(frozen=True)
class Scenario:
    kind: str
    weight: int
    prompt_words: Length
    output_tokens: Length
    think_time: tuple[float, float]
    # conversation only
    system_prompts: int = 0
    system_prompt_words: int = 0
    turns: Length | None = None
    max_context_words: int = 0


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    idle: float = 60.0  # longest silence between two bytes of a stream
    total: float = 600.0


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    shape: Shape
    scenarios: tuple[Scenario, ...]
    models: dict[str, int] = field(default_factory=dict)  # name -> weight; empty: ask /v1/models
    timeouts: Timeouts = Timeouts()
    ignore_eos: bool = True
    slo: Path = LOADTESTS / "slo.yaml"

    def scenario(self, kind: str) -> Scenario | None:
        return next((s for s in self.scenarios if s.kind == kind), None)


def resolve(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = PROFILES / f"{name_or_path}.yaml"
    if not candidate.exists():
        known = ", ".join(sorted(p.stem for p in PROFILES.glob("*.yaml")))
        raise ValueError(f"unknown profile {name_or_path!r}; known: {known}")
    return candidate


def load_profile(
    name_or_path: str, users: int | None = None, duration: float | None = None, shape: str | None = None
) -> Profile:
    path = resolve(name_or_path)
    raw = _read(path)
    shape_spec = dict(_mapping(raw.get("shape"), f"{path.name}: shape"))
    if shape is not None:
        shape_spec["name"] = shape
    scenarios = tuple(
        _scenario(kind, _mapping(spec, f"scenarios.{kind}"))
        for kind, spec in _mapping(raw.get("scenarios"), "scenarios").items()
    )
    if not any(s.weight for s in scenarios):
        raise ValueError(f"{path.name}: scenarios: at least one of {', '.join(KINDS)} with weight >= 1")
    request = _mapping(raw.get("request", {}), "request")
    _reject_unknown(request, {"timeouts", "ignore_eos"}, "request")
    slo = raw.get("slo", "slo.yaml")
    return Profile(
        name=path.stem,
        description=str(raw.get("description", "")).strip(),
        shape=build_shape(shape_spec, users=users, duration=duration),
        scenarios=scenarios,
        models=_models(raw.get("models") or {}),
        timeouts=_timeouts(_mapping(request.get("timeouts", {}), "request.timeouts")),
        ignore_eos=bool(request.get("ignore_eos", True)),
        slo=(path.parent / slo) if (path.parent / slo).exists() else LOADTESTS / slo,
    )


def _read(path: Path, depth: int = 0) -> dict[str, Any]:
    """The profile's mapping; ``extends: other`` starts from another profile (top-level keys replaced)."""
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping")
    _reject_unknown(raw, {"description", "extends", "shape", "scenarios", "models", "request", "slo"}, path.name)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if depth > 4:
        raise ValueError(f"{path.name}: extends: too deep (a cycle?)")
    return {**_read(resolve(str(parent)), depth + 1), **raw}


def _scenario(kind: str, spec: dict[str, Any]) -> Scenario:
    where = f"scenarios.{kind}"
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown scenario; expected one of {', '.join(KINDS)}")
    common = {"weight", "prompt_words", "output_tokens", "think_time"}
    extra = {"system_prompts", "system_prompt_words", "turns", "max_context_words"} if kind == "conversation" else set()
    _reject_unknown(spec, common | extra, where)
    weight = spec.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
        raise ValueError(f"{where}.weight: expected an integer >= 0, got {weight!r}")
    think = _mapping(spec.get("think_time", {"min": 1, "max": 3}), f"{where}.think_time")
    low = parse_seconds(think.get("min", 0), f"{where}.think_time.min")
    high = parse_seconds(think.get("max", low), f"{where}.think_time.max")
    if low > high:
        raise ValueError(f"{where}.think_time: min > max")
    scenario = Scenario(
        kind=kind,
        weight=weight,
        prompt_words=parse_length(spec.get("prompt_words"), f"{where}.prompt_words"),
        output_tokens=parse_length(spec.get("output_tokens"), f"{where}.output_tokens"),
        think_time=(low, high),
    )
    if kind != "conversation":
        return scenario
    turns = parse_length(spec.get("turns", {"dist": "uniform", "min": 2, "max": 6}), f"{where}.turns")
    return replace(
        scenario,
        turns=turns,
        system_prompts=parse_length(spec.get("system_prompts", 4), f"{where}.system_prompts").high,
        system_prompt_words=parse_length(spec.get("system_prompt_words", 500), f"{where}.system_prompt_words").high,
        max_context_words=parse_length(spec.get("max_context_words", 3000), f"{where}.max_context_words").high,
    )


def _models(raw: Any) -> dict[str, int]:
    if isinstance(raw, list):
        raw = dict.fromkeys(raw, 1)
    models = _mapping(raw, "models")
    for name, weight in models.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise ValueError(f"models.{name}: expected a weight >= 1, got {weight!r}")
    return {str(name): weight for name, weight in models.items()}


def _timeouts(raw: dict[str, Any]) -> Timeouts:
    _reject_unknown(raw, {"connect", "idle", "total"}, "request.timeouts")
    values = {key: parse_seconds(value, f"request.timeouts.{key}") for key, value in raw.items()}
    return Timeouts(**values)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a mapping, got {value!r}")
    return value


def _reject_unknown(spec: dict[str, Any], known: set[str], where: str) -> None:
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
