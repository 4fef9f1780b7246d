"""A registry reload changes the engine's fleet: new devices judged (deadman included),
removed ones forgotten, also across a snapshot restore; cellular grace from the link."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alert_rules.engine import Engine
from alert_rules.neighbour_layout import NeighbourLayout
from alert_rules.registry import Device
from alert_rules.rule_deadman import fleet_cellular
from tests.support.rules import engine_from

RULES = """
rules:
  - name: silent
    kind: deadman
    absent_for: 10s
    cellular_grace: 1m
"""
T0 = 1_790_000_000_000


def _silent(transitions: list) -> set[str]:  # type: ignore[type-arg]
    return {t.subject for t in transitions if t.state == "firing"}


def test_reload_adds_forgets_and_survives_a_restore(tmp_path: Path) -> None:
    e = engine_from(tmp_path, RULES, [Device("a"), Device("gone")])
    assert _silent(e.tick(T0)) == set()
    added, removed = e.set_registry([Device("a"), Device("new"), Device("cell", link="cellular")])
    assert (added, removed) == (["new", "cell"], ["gone"])
    assert _silent(e.tick(T0 + 11_000)) == {"a"}  # "gone" was due too, but is forgotten
    # the new devices' silence counts from the first tick that knew them; "cell" has a
    # minute of grace (its link is cellular)
    assert _silent(e.tick(T0 + 22_000)) == {"new"}
    assert _silent(e.tick(T0 + 75_000)) == set()
    assert _silent(e.tick(T0 + 82_000)) == {"cell"}
    # a restart: the snapshot still has the retired device's row
    blob = e.snapshot()
    e2 = engine_from(tmp_path, RULES, [Device("a"), Device("new"), Device("cell", link="cellular")])
    e2.restore(blob)
    e2.set_registry([Device("a"), Device("new"), Device("cell", link="cellular")])
    assert "gone" not in _silent(e2.tick(T0 + 200_000))


# ---- a reload worked out off the ingest thread, applied row by row ----

MIXED = """
rules:
  - name: silent
    kind: deadman
    absent_for: 3m
    cellular_grace: 2m
  - name: local
    kind: spatial
    field: pm2_5
    window: 2m
    radius_km: 3
    max_neighbours: 4
    min_neighbours: 1
    ratio: 2.0
    min_excess: 10
    regional_above: 115
    regional_fraction: 0.5
"""
MIN = 60_000


def _device(i: int, link: str, place: int, town: str) -> Device:
    return Device(f"d{i}", township=town, lat=30.0 + place * 0.01, lon=114.0 + i * 0.001,
                  link=link)


entries = st.tuples(st.sampled_from(["wired", "cellular"]), st.integers(0, 3),
                    st.sampled_from(["", "east", "west"]))
registries = st.dictionaries(st.integers(0, 11), entries, max_size=12)


def _registry(spec: dict[int, tuple[str, int, str]]) -> list[Device]:
    return [_device(i, *e) for i, e in sorted(spec.items())]


def _run(engine: Engine, reload: list[Device], how: str, heard: list[int]) -> list[tuple]:
    """Readings, a tick, the reload applied `how`, then ticks long enough for deadman and
    grace: the transitions."""
    out = []
    for k in range(3):
        devs = [f"d{i}" for i in heard]
        engine.ingest(devs, [T0 + k * MIN] * len(devs),
                      {"pm2_5": [20.0 + 60.0 * (i % 3 == 0) for i in heard]})
        out += engine.tick(T0 + k * MIN)
    if how == "prepared":
        engine.set_registry(reload, engine.prepare_registry(reload))
    elif how == "every row":  # as before: every row judged again after a reload
        engine.set_registry(reload)
        engine.fleet.layout.clear()
        engine.fleet.mark_all()
    else:
        engine.set_registry(reload)
    for k in range(3, 12):
        out += engine.tick(T0 + k * MIN)
    return sorted((t.rule, t.subject, t.state, t.at_ms) for t in out)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=registries, after=registries, heard=st.lists(st.integers(0, 14), unique=True))
def test_a_reload_judged_row_by_row_decides_as_judging_every_row(
        tmp_path: Path, before: dict[int, tuple[str, int, str]],
        after: dict[int, tuple[str, int, str]], heard: list[int]) -> None:
    """A reload marks only the rows whose entry changed (all of them when a place did):
    the transitions are those of judging every row again, prepared or not."""
    runs = {how: _run(engine_from(tmp_path, MIXED, _registry(before)), _registry(after), how,
                      heard) for how in ("every row", "prepared", "on the spot")}
    assert runs["prepared"] == runs["every row"]
    assert runs["on the spot"] == runs["every row"]


def test_a_reload_that_moves_nothing_keeps_the_layout_and_judges_only_what_changed(
        tmp_path: Path) -> None:
    reg = [_device(i, "wired", i % 3, "east") for i in range(50)]
    e = engine_from(tmp_path, MIXED, reg)
    e.tick(T0)
    spatial = {k: v for k, v in e.fleet.layout.items() if isinstance(v, NeighbourLayout)}
    assert spatial  # the spatial rule built its neighbours
    edited = [*reg[:7], dataclasses.replace(reg[7], link="cellular"), *reg[8:]]
    change = e.prepare_registry(edited)
    assert (change.added, change.removed, change.changed, change.moved) == ([], [], ["d7"], False)
    e.set_registry(edited, change)
    for key, was in spatial.items():  # not searched again, and in place for this registry
        now = e.fleet.layout[key]
        assert now.nbr_t is was.nbr_t and now.registry is e.fleet.registry
    assert e.fleet.take_changed(1000).tolist() == [7]
    assert fleet_cellular(e.fleet)[7] == 1.0
    moved = [*edited[:3], dataclasses.replace(edited[3], lat=31.0), *edited[4:]]
    e.set_registry(moved)
    for key, was in spatial.items():  # neighbours change with a place
        assert e.fleet.layout[key].nbr_t is not was.nbr_t
    assert e.fleet.take_changed(1000) is None  # every row judged again


def test_a_change_prepared_against_an_older_registry_is_worked_out_again(tmp_path: Path) -> None:
    e = engine_from(tmp_path, RULES, [Device("a"), Device("b")])
    stale = e.prepare_registry([Device("a"), Device("c")])
    e.set_registry([Device("a"), Device("b"), Device("c")])
    # compared with {a, b}, but {a, b, c} is in force now: c is not added again, b goes
    assert e.set_registry([Device("a"), Device("c")], stale) == ([], ["b"])


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(registries, st.lists(st.integers(0, 14), max_size=4)),
                      min_size=1, max_size=5))
def test_per_device_numbers_follow_reloads_row_by_row(
        steps: list[tuple[dict[int, tuple[str, int, str]], list[int]]]) -> None:
    """`FleetState.per_device` kept row by row through reloads and new rows equals
    working it out for the whole fleet."""
    e = Engine([], registry=[])
    for spec, new_rows in steps:
        e.set_registry(_registry(spec))
        e.fleet.rows_for([f"d{i}" for i in new_rows])  # heard while (un)registered
        got = fleet_cellular(e.fleet).tolist()
        want = [1.0 if (d := e.fleet.registry.get(x)) is not None and d.link == "cellular"
                else 0.0 for x in e.fleet.devices]
        assert got == want
