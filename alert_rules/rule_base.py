"""What every rule kind shares: identity, severity, labels, annotation templates, the
per-subject alert columns and turning masks into Transitions.

A rule kind computes one value per device and two boolean columns (fire condition,
clear condition) with whole-fleet numpy expressions; only the few subjects that change
state become Python objects.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from alert_rules.lifecycle import NEVER, AlertColumns, BoolArr, Masks
from alert_rules.state import FleetState, FloatArr, IntArr
from alert_rules.transitions import AlertState, Rendered, Transition


class _Blank(dict[str, Any]):
    """Unknown template keys render as an empty string instead of failing the alert."""

    def __missing__(self, key: str) -> str:
        return ""


def render(template: str, context: dict[str, Any]) -> str:
    try:
        return template.format_map(_Blank(context))
    except (ValueError, IndexError, AttributeError):
        return template  # a bad template never stops an alert


def category_contexts(std: Any, index: IntArr) -> list[dict[str, str]]:
    """{category, category_zh} per category index of `std` (-1: none, an empty dict)."""
    names = [{"category": c.en, "category_zh": c.zh} for c in std.categories]
    return [dict(names[i]) if i >= 0 else {} for i in index.tolist()]


@dataclass(kw_only=True)
class RuleBase:
    name: str
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    severity: str = "warning"
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    columns: AlertColumns = dataclasses.field(default_factory=AlertColumns, repr=False)

    kind = "base"
    #: `evaluate` can judge some rows only, and `due_ms` says when a row's result changes
    #: with nothing arriving: the engine then judges only rows that changed or fell due
    #: (kinds without it are judged over the whole fleet every tick)
    incremental: ClassVar[bool] = False
    #: judged whole whenever anything it reads changed (a device's result depends on
    #: other devices: spatial), skipped when nothing did
    whole_fleet: ClassVar[bool] = False

    # ---- what the rule needs from the fleet state (the engine sizes the rings) ----
    def fields(self) -> tuple[str, ...]:
        return ()

    def fine_windows_ms(self) -> tuple[int, ...]:
        return ()

    def hours_needed(self) -> int:
        return 0

    def extremes(self) -> tuple[str, ...]:
        return ()

    def runs_of(self) -> tuple[str, ...]:
        """Fields whose identical readings in a row the rule reads (`FleetState.runs`)."""
        return ()

    def observe(self, fleet: FleetState, rows: IntArr, ts: IntArr,
                values: dict[str, FloatArr]) -> None:
        """Per-reading incremental state (anomaly detectors); most rules keep none."""

    def evaluate(self, fleet: FleetState, now_ms: int) -> list[Transition]:
        """Judge every device."""
        return self.judge(fleet, now_ms, None)

    def judge(self, fleet: FleetState, now_ms: int, rows: IntArr | None) -> list[Transition]:
        """Judge only `rows` (sorted), or every device (None): what incremental kinds
        implement instead of `evaluate`."""
        raise NotImplementedError

    def judges_rows(self) -> bool:
        """Whether this rule can judge some rows only (`incremental`; a kind may say no
        for some of its settings)."""
        return self.incremental

    def hot_rows(self, fleet: FleetState, now_ms: int) -> IntArr:
        """Rows judged at every tick besides those that changed or fell due: rows whose
        result rests on other devices' data (a candidate checked against its neighbours).
        Kept few: a kind returns only the candidates its own data picked out."""
        return np.zeros(0, np.int64)

    def windowed(self) -> bool:
        """Reads bucketed windows or hourly aggregates: its results move when the clock
        enters a new bucket or hour, so the engine judges it whole then."""
        return bool(self.fine_windows_ms()) or self.hours_needed() > 0

    def due_ms(self, fleet: FleetState, after_ms: int, rows: IntArr | None = None) -> IntArr:
        """Per device (of `rows`), the next time after `after_ms` (when the rule was
        last judged) its result may change with no new reading, NEVER if none: its
        alert timers here; kinds whose values age add when they expire."""
        self.columns.fit(fleet.size)
        return self.columns.timer_due(self.for_ms, self.keep_firing_for_ms,
                                      slice(0, fleet.size) if rows is None else rows)

    def other_due_ms(self) -> int:
        """Due time of state that is not a device's (township alerts)."""
        return int(NEVER)

    # ---- shared plumbing ----
    def step(self, fleet: FleetState, value: FloatArr, over: BoolArr, under: BoolArr,
             now_ms: int, rows: IntArr | None = None) -> list[Transition]:
        masks = self.columns.step(over, under, now_ms, self.for_ms, self.keep_firing_for_ms,
                                  rows)
        return self.emit(masks, fleet.devices, value, now_ms, fleet, rows=rows)

    def emit(self, masks: Masks, subjects: Sequence[str], value: FloatArr, now_ms: int,
             fleet: FleetState | None = None,
             extra: dict[str, str] | None = None,
             rows: IntArr | None = None) -> list[Transition]:
        """Transitions of the rows in `masks`; `value` is per subject, or per row of
        `rows` (sorted) when only those were judged."""
        changed: list[tuple[AlertState, IntArr]] = [
            ("pending", masks.pending), ("firing", masks.firing), ("resolved", masks.resolved)]
        which = np.concatenate([m for _, m in changed])
        if which.size == 0:
            return []
        values = value[which if rows is None else np.searchsorted(rows, which)]
        # the templates' AQI categories for all changed subjects in one array expression
        contexts = iter(self.template_contexts(values))
        out: list[Transition] = []
        i = 0
        for state, mask in changed:
            for row in mask.tolist():
                out.append(self.transition(subjects[row], state, float(values[i]), now_ms,
                                           fleet, extra, next(contexts)))
                i += 1
        return out

    def transition(self, subject: str, state: AlertState, value: float, now_ms: int,
                   fleet: FleetState | None, extra: dict[str, str] | None = None,
                   context: dict[str, str] | None = None) -> Transition:
        labels = dict(self.labels)
        dev = fleet.registry.get(subject) if fleet is not None else None
        if dev is not None:
            if dev.township:
                labels.setdefault("township", dev.township)
            if dev.grid:
                labels.setdefault("grid", dev.grid)
        if extra:
            labels.update(extra)
        # what the text needs is taken now (evidence moves with the next tick); the text
        # itself is rendered when read
        evidence = self.context(subject)
        category = self.template_context(value) if context is None else context

        def text() -> dict[str, str]:
            ctx: dict[str, Any] = {"device": subject, "rule": self.name,
                                   "value": "" if math.isnan(value) else f"{value:.1f}"}
            if dev is not None:
                ctx.update(name=dev.name or dev.id, township=dev.township, grid=dev.grid)
            else:
                ctx["name"] = subject
            ctx.update(category)
            ctx.update(evidence)
            if extra:
                ctx.update(extra)
            return {k: render(v, ctx) for k, v in self.annotations.items()}

        return Transition(
            rule=self.name, subject=subject, state=state, value=value, at_ms=now_ms,
            severity=self.severity, labels=labels,
            annotations=Rendered(text) if self.annotations else {},
        )

    def template_context(self, value: float) -> dict[str, str]:
        """Template keys for one value (see `template_contexts`)."""
        return self.template_contexts(np.array([value], np.float64))[0]

    def template_contexts(self, values: FloatArr) -> list[dict[str, str]]:
        """AQI category of each value (HJ 633-2026, PM2.5) for templates like
        {category_zh}: one array expression for every subject a tick changed."""
        from alert_rules import aqi

        std = aqi.get()
        return category_contexts(std, std.category_index(std.iaqi("pm2_5", values)))

    def context(self, subject: str) -> dict[str, str]:
        """Evidence for this subject's annotation templates (kinds that keep any)."""
        return {}

    def active(self, fleet: FleetState) -> dict[str, AlertState]:
        """Subjects whose alert is pending or firing now (for rule unit tests)."""
        n = fleet.size
        self.columns.fit(n)
        out: dict[str, AlertState] = {}
        for row in np.flatnonzero(self.columns.pending_since[:n] >= 0):
            out[fleet.devices[int(row)]] = "pending"
        for row in np.flatnonzero(self.columns.firing[:n]):
            out[fleet.devices[int(row)]] = "firing"
        return out

    # ---- hand-over: per-device state moves with the device (collector.handover) ----
    def blank(self) -> Self:
        """The same rule with no per-subject state."""
        return dataclasses.replace(self, columns=AlertColumns(), **self.blank_fields())

    def blank_fields(self) -> dict[str, Any]:
        """Fields holding per-subject state beyond `columns`, fresh (kinds that have any)."""
        return {}

    def clear_rows(self, rows: IntArr) -> None:
        """Forget these devices' state (no transition is reported)."""
        self.columns.clear(rows)

    def copy_rows(self, rows: IntArr, src: Self, src_rows: IntArr) -> None:
        """Take these devices' state from the same rule in another engine."""
        self.columns.copy_from(rows, src.columns, src_rows)

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return self.columns.arrays()

    def load_state(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        self.columns.load(arrays)
