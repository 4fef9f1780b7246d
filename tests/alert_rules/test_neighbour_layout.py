"""The shared neighbour layout is searched again only when positions changed: extended
for rows added without a position, reused across a registry reload that moved nobody
(prepared on another thread and installed), and always what a fresh build gives."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alert_rules import neighbour_layout as nl
from alert_rules.engine import Engine
from alert_rules.neighbour_layout import (
    NeighbourLayout,
    build_layout,
    install_layouts,
    layout_key,
    neighbour_layout,
    prepare_layouts,
)
from alert_rules.registry import Device
from alert_rules.rulefile import DEFAULT_RULES, load_rules
from alert_rules.state import FleetState

T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000
RADIUS, K = 3.0, 8


def registry(n: int, moved: int = -1, town_of: int = -1) -> dict[str, Device]:
    """n devices on a grid ~200 m apart in 4 townships; `moved` gets another place,
    `town_of` another township."""
    out = {}
    for i in range(n):
        lat, lon = 30 + (i % 20) * 0.002, 114 + (i // 20) * 0.002
        if i == moved:
            lat += 0.01
        town = "新村" if i == town_of else f"town{i % 4}"
        out[f"d{i:03d}"] = Device(id=f"d{i:03d}", township=town, lat=lat, lon=lon)
    return out


@pytest.fixture
def searches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the neighbour searches of the layout module."""
    calls: list[int] = []
    real = nl.neighbours

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(nl, "neighbours", counting)
    return calls


def assert_fresh(fleet: FleetState) -> None:
    """The fleet's layout is exactly what a search from nothing gives."""
    got = neighbour_layout(fleet, RADIUS, K)
    want = build_layout(fleet.devices, fleet.registry, RADIUS, K).parts()
    assert np.array_equal(got[0], want[0])
    assert np.array_equal(got[1], want[1])
    assert got[2] == want[2]


def fleet_of(reg: dict[str, Device]) -> FleetState:
    fleet = FleetState(fields=("pm2_5",), registry=reg)
    fleet.rows_for(list(reg))
    return fleet


def test_unregistered_devices_extend_the_layout_without_a_search(searches: list[int]) -> None:
    """With `unknown = "accept"` every new device id is a new row without a position:
    it was a whole-fleet search on the ingest thread each time."""
    rules = load_rules(DEFAULT_RULES) + load_rules(DEFAULT_RULES.with_name("spatial_rules.yaml"))
    reg = registry(120)
    e = Engine(rules, registry=list(reg.values()))
    ids = list(reg)
    e.ingest(ids, [T0] * len(ids), {"pm2_5": [40.0 + i % 7 for i in range(len(ids))]})
    e.tick(T0)
    assert len(searches) == 1
    for step in range(1, 4):
        e.ingest([f"stranger{step}"], [T0 + step * 60_000], {"pm2_5": [500.0]})
        e.tick(T0 + step * 60_000)
    assert len(searches) == 1
    assert e.fleet.size == 123
    nbr_t = neighbour_layout(e.fleet, RADIUS, K)[0]
    assert (nbr_t[:, 120:] == 123).all()  # the strangers have no neighbours
    assert not np.isin(np.arange(120, 123), nbr_t).any()  # and are nobody's
    assert_fresh(e.fleet)


def test_a_reload_that_moved_nobody_reuses_the_neighbours(searches: list[int]) -> None:
    fleet = fleet_of(registry(80))
    first = neighbour_layout(fleet, RADIUS, K)[0]
    fleet.registry = registry(80)  # reloaded: equal, not the same mapping
    assert neighbour_layout(fleet, RADIUS, K)[0] is first
    fleet.registry = registry(80, town_of=5)  # a township renamed: codes, no search
    assert neighbour_layout(fleet, RADIUS, K)[0] is first
    assert len(searches) == 1
    assert_fresh(fleet)
    fleet.registry = registry(80, moved=7)  # a device moved: searched again
    assert neighbour_layout(fleet, RADIUS, K)[0] is not first
    assert len(searches) == 3  # (one was assert_fresh's)
    assert_fresh(fleet)


def test_rows_added_with_a_position_are_searched_again(searches: list[int]) -> None:
    reg = registry(60)
    fleet = fleet_of(reg)
    neighbour_layout(fleet, RADIUS, K)
    fleet.registry = reg | registry(61)  # a new registered device: a new row with a place
    fleet.rows_for(["d060"])
    assert_fresh(fleet)
    assert len(searches) == 3


def test_a_latitude_without_longitude_moves_the_projection_so_it_is_searched(
        searches: list[int]) -> None:
    """The projection's mean latitude counts a row's latitude even without a longitude:
    such a row is not 'without a position' for reuse."""
    reg = registry(40)
    fleet = fleet_of(reg)
    neighbour_layout(fleet, RADIUS, K)
    fleet.registry = reg | {"half": Device(id="half", lat=45.0)}
    fleet.rows_for(["half"])
    assert_fresh(fleet)
    assert len(searches) == 3


def test_layouts_prepared_on_another_thread_are_installed_and_reused(
        searches: list[int]) -> None:
    reg = registry(80)
    fleet = fleet_of(reg)
    neighbour_layout(fleet, RADIUS, K)
    new = registry(82)  # two devices added, nobody moved... but the two new ones have places
    devices = [*fleet.devices, "d080", "d081"]
    prepared: dict[str, NeighbourLayout] = {}
    t = threading.Thread(target=lambda: prepared.update(
        prepare_layouts(dict(fleet.layout), devices, new)))
    t.start()
    t.join()
    assert list(prepared) == [layout_key(RADIUS, K)]
    fleet.registry = new
    fleet.rows_for(["d080", "d081"])
    assert install_layouts(fleet, prepared) == 1
    before = len(searches)
    assert_fresh(fleet)
    assert len(searches) == before + 1  # only assert_fresh's own search
    # a reload that only renames: prepared without a search
    same = registry(82, town_of=3)
    again = prepare_layouts(dict(fleet.layout), list(fleet.devices), same)
    assert len(searches) == before + 1
    fleet.registry = same
    assert install_layouts(fleet, again) == 1
    assert_fresh(fleet)


def test_a_prepared_layout_is_left_out_when_a_device_took_a_row_in_between(
        searches: list[int]) -> None:
    reg = registry(30)
    fleet = fleet_of(reg)
    neighbour_layout(fleet, RADIUS, K)
    new = registry(31)
    prepared = prepare_layouts(dict(fleet.layout), [*fleet.devices, "d030"], new)
    fleet.rows_for(["stranger"])  # arrived while the registry was parsed
    fleet.registry = new
    fleet.rows_for(["d030"])
    assert install_layouts(fleet, prepared) == 0
    assert_fresh(fleet)


ops = st.lists(st.one_of(
    st.tuples(st.just("stranger"), st.integers(1, 3)),
    st.tuples(st.just("register"), st.integers(1, 3)),
    st.tuples(st.just("move"), st.integers(0, 200)),
    st.tuples(st.just("rename"), st.integers(0, 200)),
    st.tuples(st.just("reload"), st.just(0)),
    st.tuples(st.just("forget"), st.integers(0, 200)),
), max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 60), ops)
def test_whatever_happens_the_cached_layout_is_a_fresh_one(start: int,
                                                           steps: list[tuple[str, int]]) -> None:
    """Strangers arrive, devices are registered, moved, renamed, removed, the registry
    is reloaded unchanged, in any order: the layout the rules read is always the one a
    search from nothing gives."""
    reg = dict(registry(start))
    fleet = fleet_of(reg)
    assert_fresh(fleet)
    for serial, (op, arg) in enumerate(steps):
        if op == "stranger":
            fleet.rows_for([f"s{serial}-{i}" for i in range(arg)])
        elif op == "register":
            new = {f"n{serial}-{i}": Device(id=f"n{serial}-{i}", township="town9",
                                            lat=30 + 0.003 * i, lon=114.01)
                   for i in range(arg)}
            fleet.registry = reg = reg | new
            fleet.rows_for(list(new))
        elif op in ("move", "rename", "forget") and reg:
            d = list(reg)[arg % len(reg)]
            reg = dict(reg)
            if op == "move":
                reg[d] = Device(id=d, township=reg[d].township, lat=reg[d].lat + 0.004,
                                lon=reg[d].lon)
            elif op == "rename":
                reg[d] = Device(id=d, township=f"t{serial}", lat=reg[d].lat, lon=reg[d].lon)
            else:
                del reg[d]
            fleet.registry = reg
        else:
            fleet.registry = reg = dict(reg)
        assert_fresh(fleet)
