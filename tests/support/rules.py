"""Small helpers for the rule tests: rule files from text, fixed series, fixed clocks."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import numpy.typing as npt

from alert_rules.engine import Engine
from alert_rules.registry import Device
from alert_rules.rulefile import load_rules
from alert_rules.transitions import Transition

T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000  # an hour boundary
MIN = 60_000


def engine_from(tmp_path: Path, yaml_text: str, registry: list[Device] | None = None) -> Engine:
    f = tmp_path / "rules.yaml"
    f.write_text(textwrap.dedent(yaml_text), encoding="utf-8")
    return Engine(load_rules(f), registry=registry or [])


def run_series(engine: Engine, series: dict[str, list[float | None]], step_ms: int = MIN,
               flagged: dict[str, list[bool]] | None = None,
               start: int = T0) -> list[tuple[int, Transition]]:
    """Reading i of each device at start + i·step, a tick after each step; returns
    (step index, transition) pairs."""
    out: list[tuple[int, Transition]] = []
    steps = max(len(v) for v in series.values())
    for i in range(steps):
        now = start + i * step_ms
        devs = [d for d, v in series.items() if i < len(v)]
        if devs:
            fl = None if flagged is None else [flagged[d][i] for d in devs]
            engine.ingest(devs, [now] * len(devs), {"pm2_5": [series[d][i] for d in devs]}, fl)
        out.extend((i, t) for t in engine.tick(now))
    return out


def states(events: list[tuple[int, Transition]], rule: str | None = None,
           subject: str | None = None) -> list[tuple[int, str]]:
    return [(i, t.state) for i, t in events
            if (rule is None or t.rule == rule) and (subject is None or t.subject == subject)]


def same_state(a: dict[str, npt.NDArray[np.generic]],
               b: dict[str, npt.NDArray[np.generic]]) -> None:
    """Two engines' `snapshot_arrays` hold the same state (NaN equal to NaN)."""
    assert sorted(a) == sorted(b)
    for k in a:
        if k == "meta":
            assert json.loads(bytes(a[k]).decode()) == json.loads(bytes(b[k]).decode())
        else:
            assert np.array_equal(a[k], b[k], equal_nan=True), k
