"""Every panel query of the generated dashboards, with Grafana's variables substituted.

Used by the live test (each query must return data) and by the PNG preview.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # uid
    panel: str  # title
    panel_type: str
    ref: str  # refId
    expr: str  # as written in the dashboard, variables unsubstituted
    legend: str
    instant: bool
    unit: str

    @property
    def where(self) -> str:
        return f"{self.dashboard} / {self.panel} [{self.ref}]"


def load_dashboards(folder: Path = DASHBOARDS_DIR) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def _panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in items:
        yield p
        yield from _panels(p.get("panels") or [])  # collapsed rows keep their panels inside


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    out = []
    for p in _panels(dashboard.get("panels") or []):
        unit = ((p.get("fieldConfig") or {}).get("defaults") or {}).get("unit", "")
        for t in p.get("targets") or []:
            if t.get("expr"):
                out.append(PanelQuery(dashboard["uid"], p.get("title", ""), p.get("type", ""), t.get("refId", ""),
                                      t["expr"], t.get("legendFormat", ""), bool(t.get("instant")), unit))
    return out


def all_queries(folder: Path = DASHBOARDS_DIR) -> list[PanelQuery]:
    return [q for d in load_dashboards(folder).values() for q in panel_queries(d)]


def variable_names(dashboard: dict[str, Any]) -> list[str]:
    return [v["name"] for v in (dashboard.get("templating") or {}).get("list", [])]


_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(expr: str, variables: Mapping[str, str], *, range_: str = "15m", rate_interval: str = "1m",
               interval: str = "15s") -> str:
    """Replace ``$var`` / ``${var}`` as Grafana would, and its built-ins ``$__range`` etc.

    Unknown variables raise KeyError: a typo in a dashboard fails loudly instead of querying "$modle".
    """
    values = {"__range": range_, "__rate_interval": rate_interval, "__interval": interval, **variables}

    def repl(m: re.Match[str]) -> str:
        return values[m.group(1) or m.group(2)]

    return _VAR.sub(repl, expr)
