"""The `humidity` sensor fault: a device that reads far above its neighbours at high RH
is a humidity artefact (a failed inlet heater) only when no neighbour in the same humid
air shares the excursion; one that a neighbour shares is a plume."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alert_rules.registry import Device
from alert_rules.transitions import Transition
from tests.support.rules import MIN, T0, engine_from

WET = """
rules:
  - name: wet
    kind: sensor_fault
    cause: humidity
    window: 10m
    ratio: 1.5
    labels: {audience: maintenance}
"""

DEVICES = ("d", "n1", "n2", "n3", "n4", "n5")
GAIN = {"d": 0.9, "n1": 1.2, "n2": 1.0, "n3": 0.85, "n4": 1.1, "n5": 1.15}


def registry() -> list[Device]:
    return [Device(d, township="A", lat=39.90 + 0.0009 * i, lon=116.40)
            for i, d in enumerate(DEVICES)]


def run(tmp_path: Path, high: tuple[str, ...], rh_of_others: float = 93.0
        ) -> list[tuple[int, Transition]]:
    """An hour of the same air (about 50 µg/m³); from minute 20 to 40 the air is humid
    (RH 93 % at "d", `rh_of_others` at the others) and the devices in `high` read 2.6×."""
    rng = np.random.default_rng(4)
    x = 50 + 8 * np.sin(np.arange(60) / 7)
    e = engine_from(tmp_path, WET, registry())
    out = []
    for i in range(60):
        now = T0 + i * MIN
        humid = 20 <= i < 40
        pm = [round(float(GAIN[d] * x[i] * (1 + 0.03 * rng.standard_normal())
                          * (2.6 if humid and d in high else 1.0)), 1) for d in DEVICES]
        rh = [(93.0 if d == "d" else rh_of_others) if humid else 60.0 for d in DEVICES]
        e.ingest(list(DEVICES), [now] * len(DEVICES), {"pm2_5": pm, "humidity_pct": rh})
        out.extend((i, t) for t in e.tick(now))
    return out


def fired(ev: list[tuple[int, Transition]]) -> set[str]:
    return {t.subject for _, t in ev if t.state == "firing"}


def test_a_device_alone_far_above_its_neighbours_at_high_rh_is_a_humidity_artefact(
        tmp_path: Path) -> None:
    assert fired(run(tmp_path, ("d",))) == {"d"}


def test_a_plume_that_a_neighbour_in_the_same_humid_air_shares_is_no_sensor_fault(
        tmp_path: Path) -> None:
    assert fired(run(tmp_path, ("d", "n1"))) == set()


def test_a_neighbour_high_in_dry_air_does_not_excuse_the_device(tmp_path: Path) -> None:
    # the neighbour reads high too, but its own RH says it is not in the same humid air
    assert fired(run(tmp_path, ("d", "n1"), rh_of_others=60.0)) == {"d"}
