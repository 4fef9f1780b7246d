"""The `drift` sensor fault re-judges a `drift_stride`-th of the fleet per judging: every
row in turn, whatever the cadence of the readings and the times of the ticks."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alert_rules.registry import Device
from tests.support.rules import MIN, T0, engine_from

DRIFT = """
rules:
  - name: drift
    kind: sensor_fault
    cause: drift
    window: 6h
    ratio: 1.8
    for: 3h
    labels: {audience: maintenance}
"""

DEVICES = 12  # more than one stride (10): rows of every residue, two of some


def registry() -> list[Device]:
    return [Device(f"d{i}", township="A", lat=39.90 + 0.0005 * i, lon=116.40)
            for i in range(DEVICES)]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(faulty=st.integers(0, DEVICES - 1), every_min=st.sampled_from([10, 20, 30, 60]),
       second_tick=st.booleans())
def test_a_drifting_device_is_found_whatever_its_row_and_the_readings_cadence(
        tmp_path: Path, faulty: int, every_min: int, second_tick: bool) -> None:
    # readings every `every_min` minutes (all on whole ten minutes, as an hourly series
    # is), a tick at each and, if asked, one ten minutes later (the evaluation's ticks):
    # a turn read off the clock's minute judged only rows ≡ 0 or 1 (mod 10) again, so a
    # device on any other row was never found
    e = engine_from(tmp_path, DRIFT, registry())
    ids = [f"d{i}" for i in range(DEVICES)]
    steps = 36 * 60 // every_min  # a day and a half
    fired = []
    for i in range(steps):
        now = T0 + i * every_min * MIN
        # the faulty device reads 2.5× its neighbours from the sixth hour on
        off = 2.5 if i * every_min >= 6 * 60 else 1.0
        values = [40.0 + (j % 3) for j in range(DEVICES)]
        values[faulty] *= off
        e.ingest(ids, [now] * DEVICES, {"pm2_5": values})
        ticks = [now, now + 10 * MIN] if second_tick and every_min > 10 else [now]
        for t in ticks:
            fired.extend((t, tr.subject) for tr in e.tick(t)
                         if tr.rule == "drift" and tr.state == "firing")
    assert {s for _, s in fired} == {f"d{faulty}"}
    # off from hour 6, its 6-hour window mean 1.8× away about 3.2 h later, `for` 3 h,
    # and at most a stride (10) of judgings before its row's turn
    judgings_per_hour = 60 // every_min * (2 if second_tick and every_min > 10 else 1)
    latest = T0 + (14 + math.ceil(10 / judgings_per_hour)) * 60 * MIN
    assert fired[0][0] <= latest, (fired, latest)
