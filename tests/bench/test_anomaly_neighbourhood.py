"""bench/anomaly_eval.py's neighbourhoods: devices that read the same air through their own
sensors, faults in one of them, pollution in several, and how the alerts are counted."""

from __future__ import annotations

import numpy as np

from bench import anomaly_eval as ae

MIN = 60_000
T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000


def test_each_sensor_reads_the_same_air_with_its_own_gain() -> None:
    air = np.full(2000, 80.0)
    ys = ae.sensors(air, 6, np.random.default_rng(1))
    gains = np.median(ys, axis=1) / 80.0
    assert ys.shape == (6, 2000)
    assert np.all((gains > 0.78) & (gains < 1.27))
    assert np.unique(np.round(gains, 3)).size == 6  # every sensor its own


def test_a_fault_is_found_by_a_maintenance_alert_on_its_device_inside_its_window() -> None:
    ts = T0 + MIN * np.arange(400, dtype=np.int64)
    wins = [(100, 170), (250, 320)]
    alarms = [
        (101, "shift-0", "maintenance", "sensor_shift"),  # found, one minute late
        (102, "shift-0", "maintenance", "sensor_drift"),  # the same fault again
        (120, "shift-0", "unusual", "pm25_anomaly"),  # and told grid workers too
        (140, "shift-0", "maintenance", "sensor_shift"),  # fired again: a second alert
        (260, "shift-3", "maintenance", "sensor_shift"),  # a neighbour blamed: false
        (380, "shift-2", "maintenance", "sensor_zero"),  # outside every window: false
        (390, "clean-0", "maintenance", "sensor_zero"),  # another neighbourhood
    ]
    # the grid worker's alert was held back by the sensor fault (none delivered); the
    # first fault moves the reading beyond the sensors' accuracy, the second does not
    got = ae.judge_faults(alarms, [], "shift", wins, ts, k=6, days=2.0, big=[True, False])
    assert got["recall"] == 0.5
    assert got["recall_1h"] == 0.5
    assert got["delay_min_median"] == 1.0
    assert got["false_per_device_day"] == round(2 / 12, 4)
    assert got["neighbour_blamed"] == 0.5
    assert got["called_pollution"] == 0.5
    assert got["pollution_with_inhibit"] == 0.0
    assert got["found_by"] == {"sensor_shift": 1}
    assert got["firings_per_alert"] == 1.5  # shift twice, drift once in one fault
    assert got["beyond_spec"] == 1 and got["recall_1h_beyond_spec"] == 1.0
    delivered = [(150, "shift-0", "unusual", "pm25_anomaly")]  # went out after all
    again = ae.judge_faults(alarms, delivered, "shift", wins, ts, k=6, days=2.0,
                            big=[False, True])
    assert again["pollution_with_inhibit"] == 0.5
    assert again["beyond_spec"] == 1 and again["recall_1h_beyond_spec"] == 0.0


def test_a_pollution_event_called_a_fault_is_counted_on_any_device() -> None:
    wins = [(10, 40), (100, 130)]
    alarms = [(12, "local-1", "maintenance", "sensor_shift"),
              (15, "local-0", "level", "pm25_heavy"),
              (110, "local-0", "unusual", "pm25_anomaly")]
    # under the inhibition the anomaly alert was held (not delivered); the level went out
    got = ae.judge_events(alarms, [], "local", wins)
    assert got == {"events": 2, "called_fault": 0.5, "called_pollution": 1.0,
                   "pollution_with_inhibit": 0.5,
                   "maintenance_by_rule": {"sensor_shift": 1}}


def test_a_small_neighbourhood_run_finds_shifts_and_leaves_pollution_to_grid_workers(
) -> None:
    # two hours' swing of clean-ish air a minute apart: every group of devices through
    # the engine with the shipped rules
    n = 900
    t = np.arange(n)
    air = np.round(70 + 30 * np.sin(t / 120) + np.random.default_rng(4).normal(0, 1, n), 1)
    ts = T0 + MIN * t.astype(np.int64)
    out = ae.evaluate_neighbourhood("synthetic", ts, air, None, np.random.default_rng(7),
                                    per_kind=2, k=6)
    shift = out["shift"]
    assert isinstance(shift, dict) and shift["faults"] == 2
    assert shift["recall_1h"] == 1.0
    regional = out["regional"]
    assert isinstance(regional, dict) and regional["called_fault"] == 0.0
    clean = out["clean"]
    assert isinstance(clean, dict) and clean["maintenance_per_device_day"] == 0.0
    assert "humidity" not in out  # no humidity for this trace


def test_a_tick_s_transitions_are_taken_in_the_order_the_alert_manager_flushes_them() -> None:
    """A fault that fires mutes what fires with it; an "unusual" alert that resolves in
    the tick where its device's fault resolves is not released to the grid worker (it
    was counted as delivered before)."""
    tick = [("unusual", "firing"), ("maintenance", "resolved"), ("level", "firing"),
            ("unusual", "resolved"), ("maintenance", "firing")]
    got = sorted(tick, key=lambda t: ae.flush_order(*t))
    assert got == [("maintenance", "firing"), ("unusual", "resolved"),
                   ("maintenance", "resolved"), ("unusual", "firing"), ("level", "firing")]
