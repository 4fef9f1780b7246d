"""Each rule kind on fixed series: fires when it should, not before its `for`, clears with
hysteresis, does not flap on a series hovering at the limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alert_rules.engine import Engine
from alert_rules.registry import Device
from alert_rules.transitions import Transition
from tests.support.rules import MIN, T0, engine_from, run_series, states

THRESHOLD = """
rules:
  - name: heavy
    kind: threshold
    aggregate: mean
    window: 5m
    above: 150
    clear_below: 135
    for: 10m
    keep_firing_for: 5m
    annotations:
      summary_en: "{name} ({township}): PM2.5 {value}, {category}"
"""


def test_threshold_fires_after_for_and_not_before(tmp_path: Path) -> None:
    e = engine_from(tmp_path, THRESHOLD)
    ev = run_series(e, {"a": [40.0] * 5 + [220.0] * 30, "b": [40.0] * 35})
    # the 5-minute mean passes 150 at step 7 (2 of 5+1 buckets at 220 → 113; 3 → 150; 4 → 180)
    s = states(ev, "heavy", "a")
    assert s[0][1] == "pending"
    first_pending = s[0][0]
    assert s[1] == (first_pending + 10, "firing")  # exactly `for` later, not before
    assert states(ev, subject="b") == []
    firing = next(t for i, t in ev if t.state == "firing")
    assert firing.annotations["summary_en"].startswith("a (): PM2.5 220.0, Heavily Polluted")


def test_threshold_hysteresis_does_not_flap(tmp_path: Path) -> None:
    e = engine_from(tmp_path, THRESHOLD)
    hover = [145.0, 155.0, 148.0, 152.0, 140.0, 160.0] * 10  # mean hovers around 150
    ev = run_series(e, {"a": [220.0] * 20 + hover + [60.0] * 20})
    s = [st for _, st in states(ev, "heavy", "a")]
    # fires once, stays firing while hovering above the 135 clear line, resolves once
    assert s == ["pending", "firing", "resolved"]
    resolved_at = states(ev, "heavy", "a")[-1][0]
    # 60 enters at step 80; the mean drops below 135 at step 82; +5 min keep_firing_for
    assert 20 + len(hover) + 5 <= resolved_at <= 20 + len(hover) + 8


def test_threshold_short_excursion_never_fires(tmp_path: Path) -> None:
    e = engine_from(tmp_path, THRESHOLD)
    ev = run_series(e, {"a": [40.0] * 5 + [300.0] * 8 + [40.0] * 20})
    assert [st for _, st in states(ev, "heavy", "a")] == ["pending"]


AQI = """
rules:
  - name: aqi_heavy
    kind: aqi_category
    standard: hj633-2026
    aggregate: mean
    window: 1m
    at_least: Heavily Polluted
    clear_margin: 10
"""


def test_aqi_category_fires_at_level_and_clears_below_edge_margin(tmp_path: Path) -> None:
    e = engine_from(tmp_path, AQI)
    # 160 µg/m³ → IAQI 210 (重度); 148 → IAQI 197 (edge 200 − 10 < 197: still firing);
    # 130 → IAQI 172: clears
    ev = run_series(e, {"a": [100.0] * 3 + [160.0] * 3 + [148.0] * 5 + [130.0] * 3})
    s = states(ev, "aqi_heavy", "a")
    assert s[0][1] == "firing"
    assert s[0][0] in (3, 4)
    assert s[1][1] == "resolved"
    assert s[1][0] >= 11
    fired = next(t for _, t in ev if t.state == "firing")
    assert fired.labels["level"] == "Heavily Polluted"
    assert fired.labels["standard"] == "hj633-2026"


def test_rate_of_change_spike(tmp_path: Path) -> None:
    e = engine_from(tmp_path, """
rules:
  - name: spike
    kind: rate_of_change
    above: 100
    clear_below: 20
    keep_firing_for: 2m
""")
    ev = run_series(e, {"a": [30.0, 31, 30, 250, 252, 251, 250, 250, 250],
                        "b": [30.0, 60, 90, 120, 150, 180, 210, 240, 270]})
    assert states(ev, "spike", "a") == [(3, "firing"), (6, "resolved")]
    assert states(ev, "spike", "b") == []  # 30 per minute: a fast episode, not a spike


def test_flatline_catches_a_stuck_sensor(tmp_path: Path) -> None:
    e = engine_from(tmp_path, """
rules:
  - name: stuck
    kind: flatline
    window: 10m
    min_readings: 8
""")
    ev = run_series(e, {"stuck": [42.0] * 15 + [43.0, 45.0, 41.0] * 5,
                        "live": [42.0, 42.5] * 15})
    s = states(ev, "stuck", "stuck")
    assert s[0] == (7, "firing")  # 8 identical readings in the window
    assert s[1][1] == "resolved" and s[1][0] == 15
    assert states(ev, "stuck", "live") == []


STUCK = """
rules:
  - name: stuck
    kind: flatline
    window: 25m
    tolerance: 0
    min_readings: 10
"""


def test_flatline_counts_identical_readings_in_a_row_of_a_slow_device(tmp_path: Path) -> None:
    # An hourly device, and one on a 5-minute working period, never hold ten readings in
    # 25 minutes: ten identical ones in a row are a frozen sensor all the same.
    for step_ms in (60 * MIN, 5 * MIN):
        e = engine_from(tmp_path, STUCK)
        ev = run_series(e, {"frozen": [30.0, 31.0] + [42.0] * 12 + [40.0, 44.0],
                            "nine": [30.0] + [42.0] * 9 + [40.0] * 1,
                            "live": [42.0, 42.5] * 8}, step_ms=step_ms)
        assert states(ev, "stuck", "frozen") == [(11, "firing"), (14, "resolved")], step_ms
        assert states(ev, "stuck", "nine") == [] and states(ev, "stuck", "live") == []


def test_flatline_a_fast_device_must_still_be_flat_for_the_whole_window(
    tmp_path: Path,
) -> None:
    # Ten identical readings a minute apart are clean air read in whole µg/m³, not yet a
    # frozen sensor: the run must span the window, as a flat window does.
    e = engine_from(tmp_path, STUCK)
    ev = run_series(e, {"clean": [3.0, 4.0] * 10 + [3.0] * 40})
    [(fired, state)] = states(ev, "stuck", "clean")
    assert state == "firing" and 19 + 24 <= fired <= 19 + 27


def test_flatline_runs_survive_a_restart_and_pass_over_late_readings(tmp_path: Path) -> None:
    hour = 60 * MIN
    e = engine_from(tmp_path, STUCK)
    run_series(e, {"frozen": [42.0] * 6}, step_ms=hour)
    restored = engine_from(tmp_path, STUCK)
    restored.restore(e.snapshot())
    # a late reading of another value, from before the run's newest, breaks nothing
    restored.ingest(["frozen"], [T0 + 5 * hour - MIN], {"pm2_5": [17.0]})
    ev = run_series(restored, {"frozen": [42.0] * 4}, step_ms=hour, start=T0 + 6 * hour)
    assert states(ev, "stuck", "frozen") == [(3, "firing")]  # the 10th reading in a row


def test_out_of_range(tmp_path: Path) -> None:
    e = engine_from(tmp_path, """
rules:
  - name: range
    kind: out_of_range
    min: 0
    max: 1000
""")
    ev = run_series(e, {"neg": [10.0, -5.0, 10.0], "high": [10.0, 1200.0, 1200.0],
                        "ok": [0.0, 999.0, 1000.0]})
    assert states(ev, "range", "neg") == [(1, "firing"), (2, "resolved")]
    assert states(ev, "range", "high") == [(1, "firing")]
    assert states(ev, "range", "ok") == []


def test_data_quality_flagged_share(tmp_path: Path) -> None:
    e = engine_from(tmp_path, """
rules:
  - name: dq
    kind: data_quality
    window: 5m
    above: 0.5
    clear_below: 0.2
    min_readings: 4
""")
    flags = {"bad": [False] * 3 + [True] * 10 + [False] * 12, "good": [False, True] * 12 + [False]}
    ev = run_series(e, {"bad": [30.0] * 25, "good": [30.0] * 25}, flagged=flags)
    s = states(ev, "dq", "bad")
    assert s[0][1] == "firing" and 5 <= s[0][0] <= 7
    assert s[1][1] == "resolved" and s[1][0] >= 13
    assert states(ev, "dq", "good") == []  # 50 % is not above 0.5


def test_deadman_catches_never_reporting_devices_with_cellular_grace(tmp_path: Path) -> None:
    reg = [Device("wired", link="wired"), Device("cell", link="cellular"),
           Device("talks", township="城关镇")]
    e = engine_from(tmp_path, """
rules:
  - name: silent
    kind: deadman
    absent_for: 10m
    cellular_grace: 5m
""", registry=reg)
    ev = run_series(e, {"talks": [30.0] * 12})
    assert states(ev, "silent", "wired") == [(10, "firing")]
    assert states(ev, "silent", "talks") == []
    ev2: list[tuple[int, Transition]] = []
    for k in range(12, 30):
        ev2.extend((k, t) for t in e.tick(T0 + k * MIN))
    assert states(ev2, "silent", "cell") == [(15, "firing")]
    # talks' last reading was at step 11: silent from step 21
    assert states(ev2, "silent", "talks") == [(21, "firing")]
    e.ingest(["talks"], [T0 + 30 * MIN], {"pm2_5": [30.0]})
    back = e.tick(T0 + 30 * MIN)
    assert [(t.subject, t.state) for t in back if t.subject == "talks"] == [("talks", "resolved")]
    assert next(t for _, t in ev2 if t.subject == "talks").labels["township"] == "城关镇"


def test_anomaly_spike_fires_once_with_cooldown(tmp_path: Path) -> None:
    e = engine_from(tmp_path, """
rules:
  - name: odd
    kind: anomaly
    above: 0.9
    cooldown: 10m
""")
    base = [30.0 + (i % 5) for i in range(40)]
    series = [*base[:20], 400.0, *base[20:25], 380.0, *base[25:]]
    ev = run_series(e, {"a": series, "calm": base})
    # each odd reading is judged at the next one (it came back: a spike); the second
    # (step 26, judged at 27) falls in the cooldown: still one alert, which resolves 10
    # minutes after the last odd score
    assert states(ev, "odd", "a") == [(21, "firing"), (38, "resolved")]
    assert states(ev, "odd", "calm") == []


def test_an_anomaly_alert_names_what_made_it_in_both_languages(tmp_path: Path) -> None:
    e = engine_from(tmp_path, """
rules:
  - name: odd
    kind: anomaly
    above: 0.6
    cooldown: 10m
    annotations:
      summary_zh: "{name}：读数异常（{statistic_zh}，得分 {value}）"
      summary_en: "{name}: unusual ({statistic_en}, score {value})"
""")
    base = [30.0 + (i % 5) for i in range(40)]
    frozen = [*base[:20], *([31.0] * 20)]  # stuck from step 20
    ev = run_series(e, {"spiky": [*base[:20], 400.0, *base[21:]], "frozen": frozen})
    said = {t.subject: (t.state, t.annotations["summary_zh"], t.annotations["summary_en"])
            for _, t in ev}
    assert said["spiky"] == ("resolved", "spiky：读数异常（单点尖峰后回落，得分 0.0）",
                             "spiky: unusual (a one-reading spike that came back, score 0.0)")
    firing = next(t for _, t in ev if t.subject == "frozen" and t.state == "firing")
    assert firing.annotations["summary_en"].startswith("frozen: unusual (a reading stuck")
    assert "读数停滞不变" in firing.annotations["summary_zh"]


def test_spatial_local_source_versus_regional_episode(tmp_path: Path) -> None:
    # town A: 6 devices within ~1 km, one of them near a local source
    # town B: 6 devices, most elevated together (a regional episode)
    reg = [Device(f"a{i}", township="A", lat=39.90 + 0.001 * i, lon=116.40) for i in range(6)]
    reg += [Device(f"b{i}", township="B", lat=40.50 + 0.001 * i, lon=116.40) for i in range(6)]
    e = engine_from(tmp_path, """
rules:
  - name: spatial
    kind: spatial
    window: 2m
    radius_km: 3
    min_neighbours: 3
    ratio: 2
    min_excess: 35
    regional_above: 115
    regional_fraction: 0.5
""", registry=reg)
    series: dict[str, list[float | None]] = {f"a{i}": [40.0] * 6 for i in range(6)}
    series["a3"] = [40.0, 40, 200, 200, 200, 200]
    series.update({f"b{i}": [40.0, 40, 180, 190, 185, 200] for i in range(5)})
    series["b5"] = [40.0] * 6
    ev = run_series(e, series)
    assert [(t.subject, t.state) for _, t in ev if t.state == "firing"] == \
        [("a3", "firing"), ("B", "firing")]
    town = next(t for _, t in ev if t.subject == "B")
    assert town.labels["scope"] == "township" and town.labels["township"] == "B"


def firings_at_cadence(e: Engine, series: dict[str, list[float]], step_ms: int
                       ) -> list[tuple[str, int]]:
    """Reading k of every device at T0 + k·step_ms, a tick at each reading and the
    timer's between them, a minute apart; (device, k) of each alert that fired."""
    fired = []
    for k in range(max(len(v) for v in series.values())):
        now = T0 + k * step_ms
        e.ingest(list(series), [now] * len(series), {"pm2_5": [v[k] for v in series.values()]})
        for t in [t for m in range(0, step_ms, MIN) for t in e.tick(now + m)]:
            if t.state == "firing":
                fired.append((t.subject, k))
    return fired


def test_one_reading_far_above_the_neighbours_is_no_local_source(tmp_path: Path) -> None:
    # A single reading held a window's mean up for the whole window, and so passed
    # `for` alone: a sensor's spike sent a grid worker. Two readings that agree still
    # make a source, at any cadence.
    from alert_rules.rulefile import DEFAULT_RULES

    spatial = DEFAULT_RULES.with_name("spatial_rules.yaml").read_text(encoding="utf-8")
    reg = [Device(f"a{i}", township="A", lat=39.90 + 0.001 * i, lon=116.40) for i in range(6)]
    for step_ms in (MIN, 10 * MIN, 60 * MIN):
        e = engine_from(tmp_path, spatial, registry=reg)
        series = {f"a{i}": [20.0] * 24 for i in range(6)}
        series["a1"][2] = 260.0  # one reading: a spike
        series["a4"][4:] = [150.0, 160.0, 155.0, 150.0] * 5  # a source that stays
        fired = firings_at_cadence(e, series, step_ms)
        assert [d for d, _ in fired] == ["a4"], (step_ms, fired)
        assert fired[0][1] <= {MIN: 16, 10 * MIN: 6, 60 * MIN: 5}[step_ms], (step_ms, fired)


def test_a_frozen_sensor_left_above_cleared_air_is_no_local_source(tmp_path: Path) -> None:
    # The air clears; one sensor froze at the haze's level. It now reads far above its
    # neighbours, as a source would, but the same value again and again: not a grid
    # worker's (sensor_stuck tells the technician). A source at that level whose
    # readings vary, beside it, is one. At any cadence.
    from alert_rules.rulefile import DEFAULT_RULES

    spatial = DEFAULT_RULES.with_name("spatial_rules.yaml").read_text(encoding="utf-8")
    reg = [Device(f"a{i}", township="A", lat=39.90 + 0.001 * i, lon=116.40) for i in range(7)]
    for step_ms in (MIN, 10 * MIN, 60 * MIN):
        e = engine_from(tmp_path, spatial, registry=reg)
        series = {f"a{i}": [110.0 + i] * 4 + [20.0 + i % 3] * 26 for i in range(7)}
        series["a2"] = [112.0] * 30  # frozen at its reading when the haze was here
        series["a5"][4:] = [112.0, 118.0, 114.0, 121.0, 116.0] * 5 + [113.0]  # a source
        fired = firings_at_cadence(e, series, step_ms)
        assert [d for d, _ in fired] == ["a5"], (step_ms, fired)


def test_bad_input_is_counted_and_named(tmp_path: Path) -> None:
    import pytest

    from alert_rules.rulefile import RuleFileError

    e = engine_from(tmp_path, THRESHOLD)
    e.ingest(["a", "b"], [T0, T0], {"pm2_5": [float("inf"), 30.0]})
    assert e.fleet.bad_values == 1
    assert e.tick(T0) == []
    with pytest.raises(ValueError, match="different lengths"):
        e.ingest(["a"], [T0, T0], {"pm2_5": [1.0]})
    # a reading older than the minute ring is left out of it and counted
    e.ingest(["a"], [T0 - 3_600_000], {"pm2_5": [500.0]})
    assert e.fleet.late_dropped == 1
    with pytest.raises(RuleFileError, match=r"rules.yaml:4: field: 'pm25' is not a reading"):
        engine_from(tmp_path, "rules:\n  - name: x\n    kind: threshold\n    field: pm25\n"
                    "    above: 1\n")


def test_demo_rules_fire_within_seconds_only_for_the_polluted_device() -> None:
    import alert_rules
    from alert_rules.engine import Engine
    from alert_rules.rulefile import load_rules

    demo = Path(alert_rules.__file__).with_name("demo_rules.yaml")
    e = Engine(load_rules(demo))
    fired: dict[str, int] = {}
    for i in range(30):  # one reading a second, like the demo's agents
        now = T0 + i * 1000
        e.ingest(["dirty", "clean1", "clean2"], [now - 300] * 3,
                 {"pm2_5": [220.0 + (i % 3), 25.0 + i % 5, 45.0 - i % 4]})
        for t in e.tick(now):
            if t.state == "firing":
                fired.setdefault(t.subject, i)
    assert set(fired) == {"dirty"}
    assert fired["dirty"] <= 6


def test_sensor_fault_versus_pollution_with_neighbours(tmp_path: Path) -> None:
    # five devices within ~500 m; "z" goes to 0, "j" jumps alone for a minute, and later
    # a plume passes over "p" and its neighbours in one minute (pollution); the
    # anomaly rule reports "p" and not "j" (both judged at the reading after the jump,
    # against what the neighbours read in the jump's minute)
    reg = [Device(d, township="A", lat=39.90 + 0.001 * i, lon=116.40)
           for i, d in enumerate(("z", "j", "p", "n1", "n2"))]
    e = engine_from(tmp_path, """
rules:
  - name: zero
    kind: sensor_fault
    cause: zero
    for: 2m
    labels: {audience: maintenance}
    annotations: {summary_en: "{device} 0 for {duration_min} min; neighbours {neighbour_median}"}
  - name: jump
    kind: sensor_fault
    cause: jump
    ratio: 4
    min_neighbour_level: 50
  - name: odd
    kind: anomaly
    above: 0.9
    neighbours: true
    cooldown: 10m
""", registry=reg)
    base = [40.0 + (i % 5) for i in range(30)]
    ev = run_series(e, {
        "z": base[:25] + [0.0] * 5,
        "j": [*base[:25], 400.0, *base[26:]],
        "p": [*base[:28], 400.0, *base[29:]],
        "n1": [*base[:28], 380.0, *base[29:]],
        "n2": [*base[:28], 390.0, *base[29:]],
    })
    assert states(ev, "zero", "z") == [(25, "pending"), (27, "firing")]
    fired = next(t for _, t in ev if t.rule == "zero" and t.state == "firing")
    assert fired.labels["audience"] == "maintenance"
    assert fired.annotations["summary_en"] == "z 0 for 2 min; neighbours 42.0"
    assert ("j", "firing") in [(t.subject, t.state) for _, t in ev if t.rule == "jump"]
    assert {t.subject for _, t in ev if t.rule == "jump"} == {"j"}  # not the polluted ones
    odd = {t.subject for _, t in ev if t.rule == "odd" and t.state == "firing"}
    assert "p" in odd and "j" not in odd and "z" not in odd


def test_a_jump_in_clean_air_is_a_jump_though_the_neighbours_noise_moves_their_median(
    tmp_path: Path,
) -> None:
    # At 2 µg/m³ a low-cost sensor's noise moves the neighbours' median by more than a
    # fifth from one reading to the next: a jump to 150 is still the device's alone. A
    # rise that every device shares is none.
    from alert_rules.rulefile import DEFAULT_RULES

    reg = [Device(f"a{i}", township="A", lat=39.90 + 0.001 * i, lon=116.40) for i in range(6)]
    e = engine_from(tmp_path, DEFAULT_RULES.read_text(encoding="utf-8"), registry=reg)
    # clean air that goes from about 1.4 to 2.4 µg/m³ as the device jumps
    series = {f"a{k}": [1.2 + 0.1 * k] * 6 + [2.1 + 0.1 * k] * 6 for k in range(6)}
    series["a2"][6] = 150.0  # the device's alone
    for k in range(6):  # and later every device's
        series[f"a{k}"][10:] = [150.0 + k, 149.0 + k]
    ev = run_series(e, series)
    jumps = [(t.subject, i) for i, t in ev if t.rule == "sensor_jump" and t.state == "firing"]
    assert jumps == [("a2", 6)]


def test_a_jump_that_the_nearest_neighbour_shares_is_pollution(tmp_path: Path) -> None:
    # A plume reaches the device and its nearest neighbour only: both step 5× at the
    # same reading while the other neighbours, and so their median, stay. Not a sensor
    # fault. The same step on the device alone is one.
    from alert_rules.rulefile import DEFAULT_RULES

    reg = [Device(f"a{i}", township="A", lat=39.90 + 0.001 * i, lon=116.40) for i in range(6)]
    for shared in (True, False):
        e = engine_from(tmp_path, DEFAULT_RULES.read_text(encoding="utf-8"), registry=reg)
        series = {f"a{k}": [20.0 + k] * 12 for k in range(6)}
        series["a2"][6:9] = [105.0, 30.0, 22.0]
        if shared:
            series["a3"][6:9] = [110.0, 31.0, 23.0]
        ev = run_series(e, series)
        jumps = [(t.subject, i) for i, t in ev
                 if t.rule == "sensor_jump" and t.state == "firing"]
        assert jumps == ([] if shared else [("a2", 6)]), shared


def test_sensor_fault_drift_and_humidity_against_neighbours(tmp_path: Path) -> None:
    reg = [Device(d, township="A", lat=39.90 + 0.001 * i, lon=116.40)
           for i, d in enumerate(("d", "h", "n1", "n2", "n3"))]
    e = engine_from(tmp_path, """
rules:
  - name: drift
    kind: sensor_fault
    cause: drift
    window: 10m
    ratio: 1.8
    for: 30m
    annotations: {summary_en: "{device} off for {duration_min} min vs {neighbour_median}"}
  - name: wet
    kind: sensor_fault
    cause: humidity
    window: 10m
    ratio: 1.5
""", registry=reg)
    ev = []
    for i in range(90):
        now = T0 + i * MIN
        # "d" drifts upward from minute 20 (2× the neighbours by minute 40); "h" reads
        # 3× its neighbours while its RH is 95 % from minute 60
        d = 40.0 * (1 + max(0, min(i - 20, 20)) / 20)
        h = 120.0 if i >= 60 else 40.0
        e.ingest(["d", "h", "n1", "n2", "n3"], [now] * 5,
                 {"pm2_5": [d, h, 40.0, 41.0, 39.0],
                  "humidity_pct": [60.0, 95.0 if i >= 60 else 60.0, 60.0, 60.0, 60.0]})
        ev.extend((i, t) for t in e.tick(now))
    drift = [(i, t) for i, t in ev if t.rule == "drift"]
    # "h" is pending for drift too (it is off from its neighbours), but not yet 30 min
    assert {t.subject for _, t in drift if t.state == "firing"} == {"d"}
    fired = next((i, t) for i, t in drift if t.state == "firing")
    assert 60 <= fired[0] <= 80, fired[0]  # off by 1.8× from about minute 38, for 30 min
    assert fired[1].annotations["summary_en"].startswith("d off for ")
    wet = [(i, t.subject, t.state) for i, t in ev if t.rule == "wet"]
    assert wet and {s for _, s, _ in wet} == {"h"} and wet[0][0] >= 60


def test_rules_comparing_neighbours_share_one_layout_found_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The spatial and sensor-fault rules (and the anomaly rule's neighbour check) read one
    neighbour layout per radius and k: found once, not again on every tick because one rule
    stored it in a shape the other did not take (which cost a whole-fleet neighbour search
    a tick at 100,000 devices)."""
    from alert_rules import neighbour_layout
    from alert_rules.engine import Engine
    from alert_rules.rulefile import DEFAULT_RULES, load_rules

    calls: list[int] = []
    real = neighbour_layout.neighbours

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(neighbour_layout, "neighbours", counting)
    rules = load_rules(DEFAULT_RULES) + load_rules(DEFAULT_RULES.with_name("spatial_rules.yaml"))
    kinds = {r.kind for r in rules}
    assert {"spatial", "sensor_fault"} <= kinds
    reg = [Device(id=f"d{i}", township="t", grid="g", lat=30.0 + i * 0.001,
                  lon=120.0) for i in range(40)]
    e = Engine(rules, registry=reg)
    ids = [d.id for d in reg]
    for step in range(6):
        now = T0 + step * MIN
        e.ingest(ids, [now] * len(ids), {"pm2_5": [50.0 + i for i in range(len(ids))]})
        e.tick(now)
    pairs = {(getattr(r, "radius_km", None), getattr(r, "max_neighbours", None))
             for r in rules if hasattr(r, "radius_km")}
    assert 1 <= len(calls) <= len(pairs)


def test_a_frozen_sensor_is_no_pollution_though_its_neighbours_agree_with_its_value(
        tmp_path: Path) -> None:
    # "s" freezes at a plausible value for half an hour among neighbours that keep
    # varying around it: the detector scores the run (its `stuck` statistic), and the
    # neighbours do not contradict the value, but no air repeats a reading for that
    # long: with `neighbours: true` it is left to the flatline rule (a technician), not
    # reported as unusual air; without, the anomaly rule reports it
    reg = [Device(d, township="A", lat=39.90 + 0.001 * i, lon=116.40)
           for i, d in enumerate(("s", "n1", "n2", "n3"))]
    rng = np.random.default_rng(4)
    series = {d: np.round(40 + 4 * rng.standard_normal(90), 1).tolist()
              for d in ("s", "n1", "n2", "n3")}
    series["s"][50:80] = [series["s"][50]] * 30
    rules = """
rules:
  - name: stuck
    kind: flatline
    window: 25m
    tolerance: 0
    min_readings: 10
    labels: {audience: maintenance}
  - name: odd
    kind: anomaly
    above: 0.9
    neighbours: %s
    cooldown: 10m
"""
    got = {}
    for neighbours in ("true", "false"):
        e = engine_from(tmp_path, rules % neighbours, registry=reg)
        ev = run_series(e, series)
        got[neighbours] = {t.subject for _, t in ev if t.rule == "odd" and t.state == "firing"}
        # the whole window flat: 25 readings at one a minute
        assert states(ev, "stuck") == [(75, "firing"), (80, "resolved")], neighbours
    assert "s" in got["false"]
    assert "s" not in got["true"]
