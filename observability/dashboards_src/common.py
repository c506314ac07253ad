"""Building blocks shared by every dashboard: variables, panel shapes, and the ``Board`` that
numbers and lays out panels.

Every panel reads the data source from ``$datasource`` and filters on ``$namespace``; panels about
models filter on ``$model`` (gateway label ``model``, vLLM label ``model_name``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Label matchers for the template variables, to paste into selectors.
NS = 'namespace=~"$namespace"'
MODEL = f'{NS}, model=~"$model"'  # gateway series
VLLM = f'{NS}, model_name=~"$model"'  # engine series: vLLM names the label model_name


@dataclass(frozen=True)
class Q:
    """One query of a panel: PromQL and the legend Grafana draws for each series."""

    expr: str
    legend: str = ""
    instant: bool = False


def _target(q: Q, ref: str) -> prometheus.Dataquery:
    t = prometheus.Dataquery().expr(q.expr).ref_id(ref).datasource(DS)
    if q.legend:
        t = t.legend_format(q.legend)
    return t.instant() if q.instant else t.range()


def _targets(panel: Any, queries: tuple[Q, ...]) -> Any:
    for i, q in enumerate(queries):
        panel = panel.with_target(_target(q, chr(ord("A") + i)))
    return panel


def _thresholds(steps: list[tuple[float | None, str]]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def ts(title: str, *queries: Q, unit: str = "short", description: str = "", stack: bool = False,
       min_: float | None = 0, max_: float | None = None,
       thresholds: list[tuple[float | None, str]] | None = None) -> timeseries.Panel:
    """A time series panel."""
    p = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .line_width(1)
        .fill_opacity(10 if not stack else 40)
        .show_points(cm.VisibilityMode.NEVER)
        .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST)
                .placement(cm.LegendPlacement.BOTTOM).show_legend(True))
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )
    if min_ is not None:
        p = p.min(min_)
    if max_ is not None:
        p = p.max(max_)
    if stack:
        p = p.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    if thresholds:
        # "Tresholds" (sic) is the SDK's spelling.
        style = cb.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.LINE_AND_AREA)
        p = p.thresholds(_thresholds(thresholds)).thresholds_style(style)
    return _targets(p, queries)


def single(title: str, *queries: Q, unit: str = "short", description: str = "",
           thresholds: list[tuple[float | None, str]] | None = None, decimals: int | None = None) -> stat.Panel:
    """A stat panel: the latest value, big, coloured by thresholds."""
    p = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .graph_mode(cm.BigValueGraphMode.AREA)
        .color_mode(cm.BigValueColorMode.VALUE)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(_thresholds(thresholds or [(None, "green")]))
    )
    if decimals is not None:
        p = p.decimals(decimals)
    return _targets(p, queries)


def distribution(title: str, q: Q, unit: str = "short", description: str = "") -> bargauge.Panel:
    """Bars per histogram bucket over the dashboard's time range (a distribution, not a quantile)."""
    target = (
        prometheus.Dataquery().expr(q.expr).ref_id("A").datasource(DS).instant()
        .format(pm.PromQueryFormat.HEATMAP).legend_format(q.legend or "{{le}}")
    )
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .orientation(cm.VizOrientation.VERTICAL)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .with_target(target)
    )


def variables(model: bool = True) -> list[cogbuilder.Builder[dm.VariableModel]]:
    out: list[cogbuilder.Builder[dm.VariableModel]] = [
        db.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        db.QueryVariable("namespace")
        .label("Namespace")
        .datasource(DS)
        .query("label_values(inferstack_build_info, namespace)")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*"),
    ]
    if model:
        out.append(
            db.QueryVariable("model")
            .label("Model")
            .datasource(DS)
            # Every model the gateway discovered, with or without replicas or traffic right now.
            .query('label_values(inferstack_upstream_replicas{namespace=~"$namespace"}, model)')
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    return out


class Board:
    """A dashboard under construction: rows and panels in reading order, numbered from 1."""

    def __init__(self, uid: str, title: str, description: str, tags: list[str], model: bool = True) -> None:
        self._next_id = 1
        self.builder = (
            db.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(["inferstack", *tags])
            .refresh("30s")
            .time("now-1h", "now")
            .timezone("browser")
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .readonly()
            .link(db.DashboardLink("inferstack").type(dm.DashboardLinkType.DASHBOARDS)
                  .tags(["inferstack"]).as_dropdown(True).include_vars(True).keep_time(True))
        )
        for v in variables(model):
            self.builder = self.builder.with_variable(v)

    def row(self, title: str) -> Board:
        self.builder = self.builder.with_row(db.Row(title).id(self._take()))
        return self

    def add(self, panel: Any, w: int = 8, h: int = 8) -> Board:
        self.builder = self.builder.with_panel(panel.id(self._take()).span(w).height(h))
        return self

    def _take(self) -> int:
        n = self._next_id
        self._next_id += 1
        return n

    def json(self) -> dict[str, Any]:
        import json

        out: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(self.builder.build()))
        return out
