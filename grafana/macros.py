"""Grafana's InfluxQL macro and template-variable substitution, done the way Grafana does it.

Used by `airgrid-grafana render-queries` and by the tests that run every panel query
against a real InfluxDB. Grafana's InfluxDB datasource replaces `$timeFilter` with
`time >= <from>ms and time <= <to>ms`, `$__interval` / `$interval` with the panel's group-by
interval, `$__interval_ms` with it in milliseconds, and variables in regex position with
`(a|b)` of regex-escaped values (multi-value or All) or the raw value (single-value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from grafana.errors import GrafanaError

ALL = "$__all"
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
            "w": 604_800_000}


class MacroError(GrafanaError):
    """A query names a variable that has no value, or an interval is malformed."""


@dataclass(frozen=True)
class VariableValue:
    values: tuple[str, ...]  # or (ALL,)
    multi_or_all: bool = True  # Grafana regex-escapes only for multi-value / All variables
    all_value: str = ".*"


def interval_ms(interval: str) -> int:
    m = _DURATION.match(interval)
    if not m:
        raise MacroError(f"interval {interval!r}: expected a number and ms|s|m|h|d|w, e.g. 1m")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def format_value(v: VariableValue) -> str:
    if v.values == (ALL,):
        return v.all_value
    if not v.multi_or_all:
        return v.values[0] if v.values else ""
    escaped = [regex_escape(x) for x in v.values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def render(
    query: str, start_ms: int, end_ms: int, interval: str = "1m",
    variables: Mapping[str, VariableValue] | None = None,
) -> str:
    """The query as Grafana would send it to InfluxDB."""
    variables = variables or {}
    builtins = {
        "timeFilter": f"time >= {start_ms}ms and time <= {end_ms}ms",
        "__interval": interval,
        "interval": interval,
        "__interval_ms": str(interval_ms(interval)),
    }

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in builtins:
            return builtins[name]
        if name in variables:
            return format_value(variables[name])
        raise MacroError(f"${name} has no value (known: {sorted({*builtins, *variables})})")

    return _VAR.sub(sub, query)


def parse_assignments(items: Sequence[str]) -> dict[str, VariableValue]:
    """`name=value[,value…]` from the command line into variable values."""
    out: dict[str, VariableValue] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise MacroError(f"--var {item!r}: expected NAME=VALUE[,VALUE…]")
        values = tuple(x for x in value.split(",") if x) or (ALL,)
        out[name] = VariableValue(values)
    return out
