"""A small typed model of a Grafana dashboard, rendered to the JSON Grafana stores.

Only what the airgrid dashboards use. Each query target also records the columns the
panel reads from its result (`expect`), which the tests check against a real InfluxDB;
that record stays out of the JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

#: The one datasource every panel uses; provisioning/datasources/airgrid.yaml has this uid.
DATASOURCE_UID = "airgrid-influxdb"
DATASOURCE: dict[str, str] = {"type": "influxdb", "uid": DATASOURCE_UID}
#: Grafana's unit id for µg/m³ (the "Concentration" category; note the Greek mu, U+03BC).
UNIT_UG_M3 = "conμgm3"
SCHEMA_VERSION = 39


@dataclass(frozen=True)
class Target:
    """One InfluxQL query of a panel, written raw (Grafana's `rawQuery`)."""

    ref_id: str
    query: str
    expect: tuple[str, ...]  # result columns the panel reads (besides `time`)
    result_format: Literal["time_series", "table"] = "time_series"
    alias: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "datasource": DATASOURCE,
            "refId": self.ref_id,
            "rawQuery": True,
            "query": self.query,
            "resultFormat": self.result_format,
        }
        if self.alias:
            out["alias"] = self.alias
        return out


@dataclass(frozen=True)
class Grid:
    x: int
    y: int
    w: int
    h: int

    def to_json(self) -> dict[str, int]:
        return {"h": self.h, "w": self.w, "x": self.x, "y": self.y}


@dataclass
class Panel:
    title: str
    type: str
    grid: Grid
    targets: list[Target]
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)  # fieldConfig.defaults
    overrides: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    transformations: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, panel_id: int) -> dict[str, Any]:
        return {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "gridPos": self.grid.to_json(),
            "datasource": DATASOURCE,
            "targets": [t.to_json() for t in self.targets],
            "fieldConfig": {"defaults": self.defaults, "overrides": self.overrides},
            "options": self.options,
            "transformations": self.transformations,
        }


@dataclass(frozen=True)
class Variable:
    """A query template variable over InfluxDB tag values."""

    name: str
    label: str
    query: str
    multi: bool = True
    include_all: bool = True

    def to_json(self) -> dict[str, Any]:
        current: dict[str, Any] = (
            {"selected": True, "text": ["All"], "value": ["$__all"]} if self.include_all
            else {}
        )
        out: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": "query",
            "datasource": DATASOURCE,
            "query": self.query,
            "definition": self.query,
            "refresh": 2,  # on time range change, so new devices appear
            "multi": self.multi,
            "includeAll": self.include_all,
            "sort": 1,
            "current": current,
            "options": [],
            "hide": 0,
        }
        if self.include_all:
            # `.*` rather than a list of every value: it also matches points that do not
            # carry the tag yet (InfluxDB treats a missing tag as the empty string).
            out["allValue"] = ".*"
        return out


@dataclass(frozen=True)
class Annotation:
    """Events from an InfluxQL query, drawn on every time series panel of the dashboard."""

    name: str
    query: str
    expect: tuple[str, ...]
    text_column: str
    tags_column: str
    color: str = "red"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datasource": DATASOURCE,
            "enable": True,
            "hide": False,
            "iconColor": self.color,
            "query": self.query,
            "textColumn": self.text_column,
            "tagsColumn": self.tags_column,
            "titleColumn": "",
        }


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel]
    variables: list[Variable] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    time_from: str = "now-6h"
    refresh: str = "1m"

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["airgrid"],
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "time": {"from": self.time_from, "to": "now"},
            "refresh": self.refresh,
            "links": [{
                "type": "dashboards", "title": "airgrid", "tags": ["airgrid"],
                "asDropdown": True, "includeVars": True, "keepTime": True,
            }],
            "templating": {"list": [v.to_json() for v in self.variables]},
            "annotations": {"list": [a.to_json() for a in self.annotations]},
            "panels": [p.to_json(i) for i, p in enumerate(self.panels, start=1)],
        }
