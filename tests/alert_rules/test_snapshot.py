"""Snapshot and restore: a restart or hand-over does not reset windows or alert states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alert_rules.engine import Engine
from alert_rules.registry import Device
from alert_rules.rulefile import DEFAULT_RULES, load_rules
from alert_rules.saved_state import SnapshotError
from alert_rules.transitions import Transition

T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000
MIN = 60_000
REG = [Device(f"d{i}", township="t", link="cellular" if i == 3 else "wired") for i in range(6)]


def feed(engine: Engine, steps: range, rng_seed: int = 3) -> list[tuple[int, Transition]]:
    rng = np.random.default_rng(rng_seed)
    out: list[tuple[int, Transition]] = []
    for k in range(steps.stop):
        vals = 40 + 10 * rng.random(5)
        vals[0] = 220.0 if 15 <= k < 60 else vals[0]
        vals[1] = 42.0  # stuck
        if k in steps:
            now = T0 + k * MIN
            engine.ingest([f"d{i}" for i in range(5)], [now] * 5, {"pm2_5": list(vals)},
                          [k % 2 == 0] * 5)
            out.extend((k, t) for t in engine.tick(now))
    return out


def key(ev: list[tuple[int, Transition]]) -> list[tuple[int, str, str, str]]:
    return [(k, t.rule, t.subject, t.state) for k, t in ev]


def test_restored_engine_continues_exactly(tmp_path: Path) -> None:
    rules = lambda: load_rules(DEFAULT_RULES)  # noqa: E731
    whole = feed(Engine(rules(), registry=REG), range(90))

    first = Engine(rules(), registry=REG)
    before = feed(first, range(40))
    blob = first.snapshot()
    second = Engine(rules(), registry=REG)  # a fresh process: nothing in its windows
    second.restore(blob)
    after = feed(second, range(40, 90))
    assert key(before + after) == key(whole)
    assert any(t.rule == "pm25_heavy" and t.state == "resolved" for _, t in after)
    assert any(t.rule == "sensor_stuck" for _, t in whole)


def test_snapshot_of_other_rules_is_refused() -> None:
    e = Engine(load_rules(DEFAULT_RULES))
    blob = e.snapshot()
    other = Engine(load_rules(DEFAULT_RULES)[:2])
    with pytest.raises(SnapshotError, match="other rules"):
        other.restore(blob)
    with pytest.raises(SnapshotError, match="not an engine snapshot"):
        other.restore(b"garbage")
