"""Grafana dashboards as code (grafana-foundation-sdk). ``dashboards()`` maps uid -> dashboard JSON."""

from __future__ import annotations

from typing import Any

from . import capacity, cost, engines, fleet, gpus, service

MODULES = (service, engines, gpus, capacity, cost, fleet)


def dashboards() -> dict[str, dict[str, Any]]:
    return {m.UID: m.build() for m in MODULES}
