"""Builders for the panel types the dashboards use, with the house defaults."""

from __future__ import annotations

from typing import Any

from grafana.model import Grid, Panel, Target

LEGEND = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}
LAST = {"calcs": ["lastNotNull"], "fields": "", "values": False}


def timeseries(
    title: str, grid: Grid, targets: list[Target], unit: str, description: str = "",
    thresholds: dict[str, Any] | None = None, bands: bool = False,
    overrides: list[dict[str, Any]] | None = None, draw: str = "line",
) -> Panel:
    custom: dict[str, Any] = {
        "drawStyle": draw, "lineWidth": 1, "fillOpacity": 0, "pointSize": 4,
        "showPoints": "auto", "spanNulls": False,
        # Threshold bands: the background shows each category's colour over its range.
        "thresholdsStyle": {"mode": "area" if bands else "off"},
    }
    defaults: dict[str, Any] = {
        "unit": unit, "color": {"mode": "palette-classic"}, "custom": custom,
    }
    if thresholds:
        defaults["thresholds"] = thresholds
    return Panel(
        title, "timeseries", grid, targets, description, defaults, overrides or [],
        {"legend": LEGEND, "tooltip": {"mode": "multi", "sort": "desc"}},
    )


def stat(
    title: str, grid: Grid, targets: list[Target], unit: str, description: str = "",
    thresholds: dict[str, Any] | None = None, mappings: list[dict[str, Any]] | None = None,
    decimals: int | None = None,
) -> Panel:
    defaults: dict[str, Any] = {
        "unit": unit, "color": {"mode": "thresholds"}, "mappings": mappings or [],
        "thresholds": thresholds or {
            "mode": "absolute", "steps": [{"color": "blue", "value": None}]},
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return Panel(
        title, "stat", grid, targets, description, defaults, [],
        {"reduceOptions": LAST, "colorMode": "background", "graphMode": "none",
         "textMode": "value_and_name" if mappings else "auto", "justifyMode": "center",
         "orientation": "auto"},
    )


def bargauge(
    title: str, grid: Grid, targets: list[Target], unit: str, description: str = "",
    thresholds: dict[str, Any] | None = None, mappings: list[dict[str, Any]] | None = None,
    max_value: float | None = None,
) -> Panel:
    defaults: dict[str, Any] = {
        "unit": unit, "color": {"mode": "thresholds"}, "mappings": mappings or [],
        "min": 0,
    }
    if thresholds:
        defaults["thresholds"] = thresholds
    if max_value is not None:
        defaults["max"] = max_value
    return Panel(
        title, "bargauge", grid, targets, description, defaults, [],
        {"reduceOptions": LAST, "orientation": "horizontal", "displayMode": "basic",
         "showUnfilled": True, "valueMode": "color", "namePlacement": "left"},
    )


def table(
    title: str, grid: Grid, targets: list[Target], unit: str, description: str = "",
    overrides: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
) -> Panel:
    defaults: dict[str, Any] = {
        "unit": unit,
        "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True},
    }
    return Panel(
        title, "table", grid, targets, description, defaults, overrides or [],
        {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
        transformations or [],
    )


def state_timeline(
    title: str, grid: Grid, targets: list[Target], description: str = "",
    mappings: list[dict[str, Any]] | None = None,
) -> Panel:
    defaults: dict[str, Any] = {
        "unit": "none", "color": {"mode": "thresholds"}, "mappings": mappings or [],
        "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]},
        "custom": {"fillOpacity": 80, "lineWidth": 0},
    }
    return Panel(
        title, "state-timeline", grid, targets, description, defaults, [],
        {"mergeValues": True, "showValue": "auto", "rowHeight": 0.9, "alignValue": "left",
         "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
    )


def value_map(pairs: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """A value mapping: raw value -> (text, colour)."""
    options = {k: {"text": text, "color": color, "index": i}
               for i, (k, (text, color)) in enumerate(pairs.items())}
    return [{"type": "value", "options": options}]


def by_name(field: str, **props: Any) -> dict[str, Any]:
    """A field override: properties for the column called `field`."""
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()],
    }
