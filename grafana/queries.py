"""Every InfluxQL query in the committed dashboards, with macros substituted."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from grafana import macros
from grafana.macros import ALL, MacroError, VariableValue

_RELATIVE = re.compile(r"^now(?:-(\d+)(ms|s|m|h|d|w))?$")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # uid
    panel_id: int  # 0 for variables and annotations
    panel: str  # title, or "variable NAME" / "annotation NAME"
    ref_id: str
    query: str


def parse_time(text: str, now_ms: int | None = None) -> int:
    """`now`, `now-6h` or epoch milliseconds."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    m = _RELATIVE.match(text)
    if m:
        if not m.group(1):
            return now_ms
        return now_ms - macros.interval_ms(m.group(1) + m.group(2))
    if text.isdigit():
        return int(text)
    raise MacroError(f"time {text!r}: expected now, now-<n><unit> (e.g. now-6h) or epoch ms")


def raw_queries(dashboard: Mapping[str, Any]) -> Iterator[PanelQuery]:
    uid = str(dashboard["uid"])
    for var in dashboard.get("templating", {}).get("list", []):
        yield PanelQuery(uid, 0, f"variable {var['name']}", var["name"], var["query"])
    for ann in dashboard.get("annotations", {}).get("list", []):
        if "query" in ann:
            yield PanelQuery(uid, 0, f"annotation {ann['name']}", "Anno", ann["query"])
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            yield PanelQuery(uid, int(panel["id"]), str(panel["title"]), target["refId"],
                             target["query"])


def default_variables(
    dashboard: Mapping[str, Any], given: Mapping[str, VariableValue]
) -> tuple[dict[str, VariableValue], list[str]]:
    """Values for the dashboard's variables: given ones, else All; the names of variables
    left as they are (no All option and nothing given)."""
    out: dict[str, VariableValue] = {}
    missing: list[str] = []
    for var in dashboard.get("templating", {}).get("list", []):
        name = var["name"]
        multi_or_all = bool(var.get("multi") or var.get("includeAll"))
        all_value = var.get("allValue") or ".*"
        if name in given:
            out[name] = VariableValue(given[name].values, multi_or_all, all_value)
        elif var.get("includeAll"):
            out[name] = VariableValue((ALL,), True, all_value)
        else:
            out[name] = VariableValue((f"${name}",), False)
            missing.append(name)
    return out, missing


def rendered(
    dashboard: Mapping[str, Any], start_ms: int, end_ms: int, interval: str,
    variables: Mapping[str, VariableValue],
) -> list[PanelQuery]:
    return [
        PanelQuery(q.dashboard, q.panel_id, q.panel, q.ref_id,
                   macros.render(q.query, start_ms, end_ms, interval, variables))
        for q in raw_queries(dashboard)
    ]
