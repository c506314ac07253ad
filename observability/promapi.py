"""A minimal client for Prometheus' HTTP API (stdlib only): instant and range queries."""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from typing import Any


class PrometheusError(RuntimeError):
    pass


def _get(base: str, path: str, params: dict[str, str], timeout: float) -> Any:
    url = f"{base.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:  # 400/422 carry the PromQL error in the body
        body = json.loads(exc.read() or b"{}")
    if body.get("status") != "success":
        raise PrometheusError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
    return body["data"]


def query(base: str, expr: str, at: float | None = None, timeout: float = 10.0) -> list[dict[str, Any]]:
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    data = _get(base, "/api/v1/query", params, timeout)
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    return list(data["result"])


def query_range(base: str, expr: str, start: float, end: float, step: float,
                timeout: float = 20.0) -> list[dict[str, Any]]:
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    return list(_get(base, "/api/v1/query_range", params, timeout)["result"])


def has_numbers(result: list[dict[str, Any]]) -> bool:
    """True when a result holds at least one sample that is a number (NaN is what Grafana shows as
    "No data" too: a quantile of zero requests, a ratio of 0/0)."""
    for series in result:
        samples = series.get("values") or ([series["value"]] if "value" in series else [])
        if any(not math.isnan(float(v)) for _, v in samples):
            return True
    return False
