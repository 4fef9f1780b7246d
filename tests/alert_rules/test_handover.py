"""Hand-over support of every rule kind: a device's alert state can be dropped
(`Engine.forget`), started empty (`Engine.blank`) and taken from another engine
(`Engine.adopt`), so a device that moves between collectors is judged in one place and
its firing alert is not announced twice."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from alert_rules.anomaly import COMPONENTS
from alert_rules.engine import Engine
from alert_rules.registry import Device
from alert_rules.rule_anomaly import AnomalyRule
from alert_rules.transitions import Transition
from tests.alert_rules.test_kinds import AQI, THRESHOLD
from tests.support.rules import MIN, T0, engine_from


@dataclasses.dataclass
class Case:
    yaml: str
    target: str  # the device that fires
    series: dict[str, list[float]]
    registry: list[Device] = dataclasses.field(default_factory=list)
    flagged: dict[str, list[bool]] | None = None


SPATIAL_REG = [Device(f"a{i}", township="A", lat=39.90 + 0.001 * i, lon=116.40)
               for i in range(6)]

CASES = {
    "threshold": Case(THRESHOLD, "a", {"a": [40.0] * 5 + [220.0] * 30, "b": [40.0] * 35}),
    "aqi_category": Case(AQI, "a", {"a": [100.0] * 3 + [160.0] * 10, "b": [40.0] * 13}),
    "rate_of_change": Case("""
rules:
  - name: spike
    kind: rate_of_change
    above: 100
    clear_below: 20
""", "a", {"a": [30.0, 31, 30, 250, 252], "b": [30.0] * 5}),
    "flatline": Case("""
rules:
  - name: stuck
    kind: flatline
    window: 10m
    min_readings: 8
""", "a", {"a": [42.0] * 12, "b": [42.0, 42.5] * 6}),
    "out_of_range": Case("""
rules:
  - name: range
    kind: out_of_range
    min: 0
    max: 1000
""", "a", {"a": [10.0, 1200.0, 1200.0], "b": [10.0] * 3}),
    "data_quality": Case("""
rules:
  - name: dq
    kind: data_quality
    window: 5m
    above: 0.5
    clear_below: 0.2
    min_readings: 4
""", "a", {"a": [30.0] * 12, "b": [30.0] * 12},
        flagged={"a": [True] * 12, "b": [False] * 12}),
    "deadman": Case("""
rules:
  - name: silent
    kind: deadman
    absent_for: 10m
""", "a", {"b": [30.0] * 14}, registry=[Device("a"), Device("b")]),
    "anomaly": Case("""
rules:
  - name: odd
    kind: anomaly
    above: 0.9
    cooldown: 10m
""", "a", {"a": [30.0 + (i % 5) for i in range(20)] + [400.0, 31.0],
           "b": [30.0 + (i % 5) for i in range(22)]}),
    "spatial": Case("""
rules:
  - name: spatial
    kind: spatial
    window: 2m
    radius_km: 3
    min_neighbours: 3
    ratio: 2
    min_excess: 35
""", "a3", {**{f"a{i}": [40.0] * 6 for i in range(6)}, "a3": [40.0, 40, 200, 200, 200, 200]},
        registry=SPATIAL_REG),
}


def step(e: Engine, case: Case, i: int, skip: str | None = None) -> list[Transition]:
    devs = [d for d, v in case.series.items() if i < len(v) and d != skip]
    if devs:
        fl = None if case.flagged is None else [case.flagged[d][i] for d in devs]
        e.ingest(devs, [T0 + i * MIN] * len(devs),
                 {"pm2_5": [case.series[d][i] for d in devs]}, fl)
    return e.tick(T0 + i * MIN)


def until_firing(tmp_path: Path, case: Case) -> tuple[Engine, int]:
    e = engine_from(tmp_path, case.yaml, case.registry)
    steps = max(len(v) for v in case.series.values())
    for i in range(steps):
        if any(t.subject == case.target and t.state == "firing" for t in step(e, case, i)):
            return e, i
    raise AssertionError("the case never fires")


@pytest.mark.parametrize("kind", sorted(CASES))
def test_every_kind_forgets_a_moved_device(tmp_path: Path, kind: str) -> None:
    case = CASES[kind]
    e, i = until_firing(tmp_path, case)
    rule = e.rules[0]
    assert rule.kind == kind and rule.active(e.fleet)[case.target] == "firing"
    assert e.forget([case.target, "never-seen"]) == 1
    assert case.target not in rule.active(e.fleet)
    row = e.fleet.index[case.target]
    assert np.isnan(e.fleet.latest("pm2_5")[row]) and e.fleet.last_ts[row] == 0
    # judged nowhere here any more: silent or not, no transition (not even a deadman)
    later = [t for k in range(i + 1, i + 40) for t in step(e, case, k, skip=case.target)]
    assert [t for t in later if t.subject == case.target] == []
    if isinstance(rule, AnomalyRule):
        assert rule.detector.cols["seen"][row] == 0
    # it reports here again: judged again
    e.ingest([case.target], [T0 + (i + 40) * MIN], {"pm2_5": [30.0]})
    assert case.target not in e.away


@pytest.mark.parametrize("kind", sorted(CASES))
def test_every_kind_adopts_alert_state_from_another_engine(tmp_path: Path, kind: str) -> None:
    case = CASES[kind]
    src, i = until_firing(tmp_path, case)
    dst = engine_from(tmp_path, case.yaml, case.registry)
    dst.ingest(["z-first"], [T0], {"pm2_5": [10.0]})  # rows differ between the engines
    dst.adopt([case.target, "unknown-there"], src)
    rule = dst.rules[0]
    assert rule.active(dst.fleet)[case.target] == "firing"
    assert "unknown-there" not in dst.fleet.index
    if isinstance(rule, AnomalyRule):
        s_rule = src.rules[0]
        assert isinstance(s_rule, AnomalyRule)
        assert (rule.detector.cols["seen"][dst.fleet.index[case.target]]
                == s_rule.detector.cols["seen"][src.fleet.index[case.target]] > 0)
        # and what made it, which its resolution will name
        assert (rule.last_statistic[dst.fleet.index[case.target]]
                == s_rule.last_statistic[src.fleet.index[case.target]]
                == COMPONENTS.index("vspike"))
    # the same readings go on: the alert is already firing here, nothing to announce
    assert [t for t in step(dst, case, i) if t.subject == case.target
            and t.state == "firing"] == []


@pytest.mark.parametrize("kind", sorted(CASES))
def test_every_kind_blank_has_same_rules_and_no_state(tmp_path: Path, kind: str) -> None:
    case = CASES[kind]
    e, _ = until_firing(tmp_path, case)
    b = e.blank([case.target])
    assert b.fleet.size == len([d for d in case.registry if d.id == case.target])
    assert b.fleet.resolution_ms == e.fleet.resolution_ms
    mine, theirs = e.rules[0], b.rules[0]
    assert type(theirs) is type(mine) and theirs.name == mine.name
    assert theirs.columns is not mine.columns and theirs.columns.firing.size == 0
    assert mine.active(e.fleet)[case.target] == "firing"  # the original is untouched
    if isinstance(mine, AnomalyRule):
        assert isinstance(theirs, AnomalyRule)
        assert theirs.detector.size == 0 and theirs.detector.z0 == mine.detector.z0


# spatial alerts are a township's, not a device's; a deadman's silence is counted from
# when the new owner first knew the device, not replayed
@pytest.mark.parametrize("kind", sorted(set(CASES) - {"spatial", "deadman"}))
def test_every_kind_settles_an_adopted_alert_against_what_was_announced(
        tmp_path: Path, kind: str) -> None:
    """A replay that ends firing where nothing was announced leaves the alert due: the
    next tick announces it, once. One announced and still open is kept firing, silently,
    whatever the replay ended in."""
    case = CASES[kind]
    src, i = until_firing(tmp_path, case)

    def taken_over() -> Engine:
        """The new owner: the same readings (as the hand-over ingests history), the
        replay's alert state adopted."""
        e = engine_from(tmp_path, case.yaml, case.registry)
        for k in range(i + 1):
            devs = [d for d, v in case.series.items() if k < len(v)]
            fl = None if case.flagged is None else [case.flagged[d][k] for d in devs]
            e.ingest(devs, [T0 + k * MIN] * len(devs),
                     {"pm2_5": [case.series[d][k] for d in devs]}, fl)
        e.adopt([case.target], src)
        return e

    dst = taken_over()
    assert dst.settle_announced([case.target], {}, T0 + i * MIN) == []
    fired = [t for t in dst.tick(T0 + i * MIN) if t.subject == case.target]
    fired += [t for k in range(i + 1, i + 3) for t in step(dst, case, k)
              if t.subject == case.target]
    assert [t.state for t in fired if t.state == "firing"] == ["firing"]
    announced = taken_over()
    kept = announced.settle_announced([case.target], {(src.rules[0].name, case.target): T0},
                                      T0 + i * MIN)
    assert [(t.subject, t.state, t.at_ms) for t in kept] == [(case.target, "firing", T0)]
    assert [t for k in range(i + 1, i + 3) for t in step(announced, case, k)
            if t.subject == case.target and t.state == "firing"] == []


def test_heard_only_judges_no_registry_device_it_never_heard(tmp_path: Path) -> None:
    """A province collector given the whole registry: the devices it never heard report
    elsewhere; no deadman for them here, until one reports here (then it is judged)."""
    case = CASES["deadman"]
    e = engine_from(tmp_path, case.yaml, case.registry)
    assert e.hold_heard_only() == 2
    e.set_registry([*case.registry, Device("c")])  # a reload adds one: not expected here
    out = [t for k in range(14) for t in step(e, case, k)]
    assert [t for t in out if t.subject in {"a", "c"}] == []
    assert "a" in e.away and "c" in e.away and "b" not in e.away  # b reported here
    e.ingest(["a"], [T0 + 14 * MIN], {"pm2_5": [30.0]})
    assert "a" not in e.away
    later = [t.subject for k in range(15, 40) for t in e.tick(T0 + k * MIN)
             if t.state == "firing"]
    assert later.count("a") == 1  # silent again after reporting here: its deadman is ours


def test_keep_judges_a_never_heard_device_held_away(tmp_path: Path) -> None:
    """A province collector keeps the deadman of a registry device nobody heard
    (collector.deadman_keeper): `keep` takes it back from `away`, its silence counting
    from the first tick that knew it; the others stay away."""
    case = CASES["deadman"]
    e = engine_from(tmp_path, case.yaml, case.registry)
    e.hold_heard_only()
    e.tick(T0)
    assert e.keep(["a", "unknown"]) == 1 and "a" not in e.away
    fired = [t.subject for k in range(1, 40) for t in e.tick(T0 + k * MIN)
             if t.state == "firing"]
    assert fired.count("a") == 1 and "b" not in fired  # b: never heard, not kept here


def test_a_slow_device_s_run_of_identical_readings_moves_with_it(tmp_path: Path) -> None:
    # An hourly device six readings into a frozen run moves to another collector, which
    # rebuilds it as `collector.handover` does: its stored readings into the live engine
    # (the runs are the fleet's, as its windows are), the alert state from a replay.
    # Four more identical readings there are the tenth in a row.
    from tests.alert_rules.test_kinds import STUCK

    hour = 60 * MIN
    history = ["slow"] * 6, [T0 + k * hour for k in range(6)], {"pm2_5": [42.0] * 6}
    src = engine_from(tmp_path, STUCK)
    for k in range(6):
        src.ingest(["slow"], [T0 + k * hour], {"pm2_5": [42.0]})
        src.tick(T0 + k * hour)
    dst = engine_from(tmp_path, STUCK)
    dst.ingest(["z-first"], [T0], {"pm2_5": [10.0]})  # rows differ between the engines
    dst.ingest(*history)
    dst.adopt(["slow"], src)
    fired = []
    for k in range(6, 10):
        dst.ingest(["slow"], [T0 + k * hour], {"pm2_5": [42.0]})
        fired += [(k, t.state) for t in dst.tick(T0 + k * hour) if t.subject == "slow"]
    assert fired == [(9, "firing")]
    src.forget(["slow"])
    assert src.fleet.runs["pm2_5"].count[src.fleet.index["slow"]] == 0
