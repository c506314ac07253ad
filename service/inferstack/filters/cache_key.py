"""The response cache's key and its policy: which requests may be answered from memory.

Key: SHA-256 over the endpoint, the model's revision, the scope (tenant, unless shared) and the
canonical request: JSON with sorted keys and no insignificant whitespace, numbers that are whole
written as integers (``0.0`` and ``0`` are the same temperature), strings untouched (whitespace in
a prompt is content). ``stream`` and ``stream_options`` are left out, so one entry answers both the
streamed and the plain form of a request; ``user`` is left out because it does not change output.
A new model revision changes every key: old entries are never served, they age out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

IGNORED_FIELDS = frozenset({"stream", "stream_options", "user"})


# Whole floats become ints only inside 64 bits: JSON like 1e30 parses as a float, and as an int it
# would not encode (orjson stops at 64 bits).
_INT_RANGE = 2.0**63


def _normalise(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and -_INT_RANGE <= value < _INT_RANGE:
        return int(value)
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def canonical_request(payload: dict[str, Any]) -> bytes:
    body = {k: _normalise(v) for k, v in payload.items() if k not in IGNORED_FIELDS}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def cache_key(kind: str, payload: dict[str, Any], revision: str, scope: str) -> str:
    digest = hashlib.sha256(f"{kind}\n{revision}\n{scope}\n".encode())
    digest.update(canonical_request(payload))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class CachePolicy:
    lookup: bool  # may be answered from the cache
    store: bool  # its answer may be stored
    reason: str  # for the response header when neither: "bypass"


BYPASS = CachePolicy(False, False, "bypass")
USE = CachePolicy(True, True, "")
REFRESH = CachePolicy(False, True, "")  # Cache-Control: no-cache: ask the model, keep the fresh answer


def deterministic(kind: str, payload: dict[str, Any]) -> bool:
    """Same request, same answer: greedy sampling, or sampling with a fixed seed; embeddings always."""
    if kind == "embeddings":
        return True
    temperature = payload.get("temperature")
    greedy = isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature == 0
    seeded = isinstance(payload.get("seed"), int) and not isinstance(payload.get("seed"), bool)
    return greedy or seeded


def cache_policy(kind: str, payload: dict[str, Any], cache_control: str | None, opt: str | None) -> CachePolicy:
    """``opt`` is the ``x-inferstack-cache`` request header: ``on`` forces, ``off`` skips the cache."""
    directives = {d.strip().lower() for d in cache_control.split(",")} if cache_control else set()
    if "no-store" in directives or (opt is not None and opt.lower() == "off"):
        return BYPASS
    if not (deterministic(kind, payload) or (opt is not None and opt.lower() == "on")):
        return BYPASS
    return REFRESH if "no-cache" in directives else USE
