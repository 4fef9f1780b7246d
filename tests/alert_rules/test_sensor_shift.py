"""The `shift` sensor fault: a device whose level steps alone and stays there is a
maintenance alert; the same step seen by its nearest neighbour, or by all of them, is
pollution; a spike that comes back is not a shift; the device's own gain does not matter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alert_rules.registry import Device
from alert_rules.rulefile import DEFAULT_RULES, load_rules
from tests.support.rules import MIN, T0, engine_from, run_series, states

SHIFT = """
rules:
  - name: shift
    kind: sensor_fault
    cause: shift
    ratio: 1.5
    persist: 2
    usual_every: 10m  # the usual ratio trusted after an hour (six updates)
    labels: {audience: maintenance}
    annotations: {summary_en: "{device} left its neighbours ({neighbour_median})"}
"""

DEVICES = ("d", "n1", "n2", "n3", "n4", "n5")
#: each sensor's gain: the faulty one reads 20 % low, the others within ±25 %
GAIN = {"d": 0.8, "n1": 1.25, "n2": 1.0, "n3": 0.9, "n4": 1.1, "n5": 1.2}


def registry() -> list[Device]:
    # "n1" is the nearest to "d" (100 m); the others 300–700 m away
    return [Device(d, township="A", lat=39.90 + 0.0009 * (i if i < 2 else i + 1),
                   lon=116.40) for i, d in enumerate(DEVICES)]


def air(steps: int, seed: int = 3) -> np.ndarray:
    """The same air over the neighbourhood: a slow wave around 60 µg/m³."""
    t = np.arange(steps)
    return 60.0 + 25.0 * np.sin(t / 9.0) + np.random.default_rng(seed).normal(0, 2, steps)


def sensed(x: np.ndarray, scale: dict[str, np.ndarray] | None = None) -> dict[str, list[float]]:
    """Each device's readings of `x`: its gain, 3 % noise, times `scale` (a fault or a
    plume) where given."""
    rng = np.random.default_rng(5)
    out = {}
    for d in DEVICES:
        y = GAIN[d] * x * (1 + 0.03 * rng.standard_normal(x.size))
        if scale and d in scale:
            y = y * scale[d]
        out[d] = np.round(y, 1).tolist()
    return out


def step_at(steps: int, at: int, factor: float, length: int) -> np.ndarray:
    s = np.ones(steps)
    s[at:at + length] = factor
    return s


def test_a_level_shift_of_one_device_fires_at_its_second_reading(tmp_path: Path) -> None:
    e = engine_from(tmp_path, SHIFT, registry())
    x = air(60)
    ev = run_series(e, sensed(x, {"d": step_at(60, 30, 1.7, 20)}))
    assert states(ev, "shift", "d") == [(31, "firing"), (50, "resolved")]
    assert states(ev, "shift") == states(ev, "shift", "d")  # no neighbour blamed
    fired = next(t for i, t in ev if t.rule == "shift" and t.state == "firing")
    assert fired.labels["audience"] == "maintenance"
    median = float(fired.annotations["summary_en"].split("(")[1].rstrip(")"))
    assert abs(median - x[31]) < 0.2 * x[31]  # the neighbours' level as evidence


def test_a_downward_shift_fires_too(tmp_path: Path) -> None:
    e = engine_from(tmp_path, SHIFT, registry())
    ev = run_series(e, sensed(air(60), {"d": step_at(60, 30, 0.5, 20)}))
    assert states(ev, "shift", "d")[:1] == [(31, "firing")]


def test_pollution_seen_by_all_or_by_the_nearest_neighbour_is_no_fault(tmp_path: Path) -> None:
    plume = step_at(60, 30, 2.2, 20)
    for seen_by in (DEVICES, ("d", "n1")):
        e = engine_from(tmp_path, SHIFT, registry())
        ev = run_series(e, sensed(air(60), dict.fromkeys(seen_by, plume)))
        assert states(ev, "shift") == [], seen_by


def test_a_spike_that_comes_back_is_no_shift(tmp_path: Path) -> None:
    e = engine_from(tmp_path, SHIFT, registry())
    ev = run_series(e, sensed(air(60), {"d": step_at(60, 30, 3.0, 1)}))
    assert states(ev, "shift") == []


def test_gains_alone_raise_nothing_and_the_ratio_is_scale_free(tmp_path: Path) -> None:
    for unit in (1.0, 1000.0):
        e = engine_from(tmp_path, SHIFT, registry())
        readings = sensed(air(200, seed=9) * unit)
        assert states(run_series(e, readings), "shift") == [], unit
        e = engine_from(tmp_path, SHIFT, registry())
        faulty = sensed(air(60) * unit, {"d": step_at(60, 30, 1.7, 20)})
        assert states(run_series(e, faulty), "shift", "d")[:1] == [(31, "firing")], unit


def test_the_shipped_rules_route_a_level_shift_to_the_technician(tmp_path: Path) -> None:
    from alert_rules.engine import Engine

    # the default set with the opt-in sensor-fault rules, as the evaluation runs them
    rules = load_rules(DEFAULT_RULES) + load_rules(DEFAULT_RULES.with_name(
        "sensor_fault_rules.yaml"))
    e = Engine(rules, registry=registry())
    ev = run_series(e, sensed(air(60), {"d": step_at(60, 30, 1.8, 20)}))
    maintenance = {(t.rule, t.subject) for _, t in ev
                   if t.state == "firing" and t.labels.get("audience") == "maintenance"}
    assert maintenance == {("sensor_shift", "d")}


def test_the_level_before_a_step_is_the_window_mean_without_the_newest_reading(
        tmp_path: Path) -> None:
    # few rows are reduced row by row, many read the whole fleet's shared window mean:
    # both give the mean of the window's readings before the newest one
    reg = [Device(f"d{i}", lat=39.9 + 0.001 * i, lon=116.4) for i in range(40)]
    e = engine_from(tmp_path, SHIFT, reg)
    rule = e.rules[0]
    rng = np.random.default_rng(2)
    readings = np.round(rng.uniform(10, 90, (40, 8)), 1)
    series = {f"d{i}": readings[i].tolist() for i in range(40)}
    series["d3"] = series["d3"][:1]  # one reading: the window holds no other
    run_series(e, series)
    now = 1_700_000_000_000 // 3_600_000 * 3_600_000 + 7 * 60_000
    # SHIFT's window is 20 minutes: it holds all eight readings
    want = readings[:, :-1].mean(axis=1)
    want[3] = np.nan  # no reading before the newest, and no previous one either
    few = np.array([0, 3, 17], np.int64)
    got_few = rule._level_before(e.fleet, few, now)
    got_all = rule._level_before(e.fleet, np.arange(40), now)
    np.testing.assert_allclose(got_few, want[few], rtol=1e-12)
    np.testing.assert_allclose(got_all, want, rtol=1e-12)


def test_a_device_that_swings_from_one_fault_to_another_resolves_when_it_is_back(
        tmp_path: Path) -> None:
    # up 2× for ten readings, then 0.45× for twenty, then as before: two faults, each
    # its own alert, and nothing once the device agrees with its neighbours again (the
    # step back is judged against the device's usual ratio, learned over the first two
    # hours)
    e = engine_from(tmp_path, SHIFT, registry())
    scale = np.ones(200)
    scale[120:130] = 2.0
    scale[130:150] = 0.45
    ev = run_series(e, sensed(air(200), {"d": scale}))
    assert states(ev, "shift", "d") == [(121, "firing"), (130, "resolved"), (131, "firing"),
                                        (150, "resolved")]
    assert states(ev, "shift") == states(ev, "shift", "d")


def ramp_fault(steps: int, at: int, end: int, factor: float, over: int) -> np.ndarray:
    """A shift whose start no single step shows: the device's reading climbs to
    `factor`× over `over` readings (each step under the rule's step_ratio), stays until
    `end`, then drops back at once."""
    s = np.ones(steps)
    s[at:at + over] = factor ** (np.arange(1, over + 1) / over)
    s[at + over:end] = factor
    return s


def test_a_shift_whose_start_was_missed_is_found_and_its_end_is_no_new_fault(
        tmp_path: Path) -> None:
    # before the usual ratio, the ramp went unseen and the drop back at its end was
    # taken for a new shift (against the faulty level) and alerted after the fault
    e = engine_from(tmp_path, SHIFT, registry())
    ev = run_series(e, sensed(air(240), {"d": ramp_fault(240, 120, 170, 1.8, 6)}))
    got = states(ev, "shift", "d")
    assert [s for _, s in got] == ["firing", "resolved"], got
    assert 126 <= got[0][0] <= 126 + 10 + 2  # the next update of the usual ratio finds it
    assert got[1][0] == 170
    assert states(ev, "shift") == got


def test_a_device_that_usually_reads_high_is_judged_against_its_own_usual_ratio(
        tmp_path: Path) -> None:
    # "d" reads 1.4× its neighbours all along: no fault in six hours; a 1.7× shift on
    # top of that is found, and nothing is raised once it is back
    usual = 1.4 * float(np.median([g for d, g in GAIN.items() if d != "d"]))
    gains = dict(GAIN, d=usual)
    x = air(420, seed=11)
    rng = np.random.default_rng(8)
    series = {d: np.round(g * x * (1 + 0.03 * rng.standard_normal(x.size)), 1).tolist()
              for d, g in gains.items()}
    fault = step_at(420, 300, 1.7, 30)
    series["d"] = np.round(np.array(series["d"]) * fault, 1).tolist()
    e = engine_from(tmp_path, SHIFT, registry())
    ev = run_series(e, series)
    assert states(ev, "shift", "d") == [(301, "firing"), (330, "resolved")]
    rule = e.rules[0]
    row = e.fleet.index["d"]
    assert abs(np.exp(rule.usual.log_ratio[row]) - 1.4) < 0.05


def test_the_usual_ratio_survives_a_restart_through_the_engine_snapshot(
        tmp_path: Path) -> None:
    # two hours learned, a snapshot, a restart: the restored engine judges the missed-
    # start fault against the usual ratio it learned before; a cold one cannot
    x = air(240)
    readings = sensed(x, {"d": ramp_fault(240, 125, 170, 1.8, 6)})
    warm = engine_from(tmp_path, SHIFT, registry())
    run_series(warm, {d: v[:120] for d, v in readings.items()})
    blob = warm.snapshot()
    restored = engine_from(tmp_path, SHIFT, registry())
    restored.restore(blob)
    before, after = warm.rules[0], restored.rules[0]
    np.testing.assert_array_equal(after.usual.log_ratio[:6], before.usual.log_ratio[:6])
    np.testing.assert_array_equal(after.usual.anchor[:6], before.usual.anchor[:6])
    np.testing.assert_array_equal(after.usual.count[:6], before.usual.count[:6])
    # and the ratio's noise, which clean-air departures are judged against
    for kept in (after.usual.spread, after.usual.noise):
        assert np.isfinite(kept[:6]).all()
    np.testing.assert_array_equal(after.usual.spread[:6], before.usual.spread[:6])
    np.testing.assert_array_equal(after.usual.noise[:6], before.usual.noise[:6])
    # and how far each device has sat on one side of it (a doubt hours in the making)
    assert np.count_nonzero(before.usual.bias[:6]) >= 3
    np.testing.assert_array_equal(after.usual.bias[:6], before.usual.bias[:6])
    assert (after.usual.count[:6] >= 6).all()
    rest = {d: v[120:] for d, v in readings.items()}
    t1 = T0 + 120 * MIN
    ev = run_series(restored, rest, start=t1)
    assert [s for _, s in states(ev, "shift", "d")] == ["firing", "resolved"]
    cold = engine_from(tmp_path, SHIFT, registry())
    cold_ev = run_series(cold, rest, start=t1)
    assert states(cold_ev, "shift", "d") != states(ev, "shift", "d")


def test_a_plume_over_two_devices_stays_pollution_when_the_air_then_steps(
        tmp_path: Path) -> None:
    # "d" and its nearest neighbour read 2× from reading 120 (a local plume); at 130 the
    # air over the whole neighbourhood jumps 1.6×, so every device steps: "d" is 2× its
    # usual ratio, and so is "n1", which shares the plume (it moved before the step,
    # not at it)
    x = air(180)
    x[130:] *= 1.6
    plume = step_at(180, 120, 2.0, 40)
    e = engine_from(tmp_path, SHIFT, registry())
    ev = run_series(e, sensed(x, {"d": plume, "n1": plume}))
    assert states(ev, "shift") == []


HOUR = 60 * MIN
#: the shipped settings on an hourly series (the usual ratio updated at every reading)
SHIFT_HOURLY = SHIFT.replace("usual_every: 10m", "usual_every: 30m")


def clean_night_fault(rng: np.random.Generator, factor: float, clean: float, noise: float
                      ) -> tuple[dict[str, list[float]], int, int]:
    """Hourly readings of six sensors (their gains, 3 % noise and `noise` µg/m³ of
    additive noise): two days of hazy air, then a fault of `factor`× on "d" from hour 48
    to hour 88 during which the air clears to `clean` µg/m³ (hours 52–80) and comes
    back; then two more days. Returns the readings and the fault's bounds."""
    n, start, end = 136, 48, 88
    t = np.arange(n)
    x = 60.0 + 25.0 * np.sin(t / 7.0)
    x[52:80] = clean
    out = {}
    for d in DEVICES:
        y = GAIN[d] * x * (1 + 0.03 * rng.standard_normal(n)) + noise * rng.standard_normal(n)
        if d == "d":
            y[start:end] *= factor
        out[d] = np.round(np.maximum(y, 0.0), 1).tolist()
    return out, start, end


@settings(max_examples=15, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
# factors from 1.75: within 3 % sensor noise a fault of 1.6× against a ratio of 1.5 is
# not always two readings beyond it in the four hazy hours before the air clears (found a
# day later, when it is hazy again: seen once, on the tree before this change too)
@given(factor=st.floats(1.75, 2.5), clean=st.floats(2.0, 6.0), noise=st.floats(0.5, 1.5),
       seed=st.integers(0, 2**16))
def test_a_fault_through_clean_air_is_not_learned_and_its_end_is_no_new_fault(
        tmp_path: Path, factor: float, clean: float, noise: float, seed: int) -> None:
    # in clean air a fault is within the sensors' noise in µg/m³: its alert may resolve
    # there, but the device's usual ratio must not learn the faulty level (the first
    # update after the alert weighed the whole freeze, and readings too close in µg/m³
    # to be called a departure were learned), or the fault's end is called a new shift
    # and its alert stays open past it (Beijing, five years: four faults found a day late)
    readings, start, end = clean_night_fault(np.random.default_rng(seed), factor, clean,
                                             noise)
    e = engine_from(tmp_path, SHIFT_HOURLY, registry())
    ev = run_series(e, readings, step_ms=HOUR)
    got = states(ev, "shift", "d")
    assert got and got[0][1] == "firing" and start < got[0][0] <= start + 3, got
    firing_after = [i for i, s in got if s == "firing" and i >= end]
    assert firing_after == [], got
    assert states(ev, "shift") == got  # no neighbour blamed
    rule = e.rules[0]
    usual = float(np.exp(rule.usual.log_ratio[e.fleet.index["d"]]))
    others = float(np.median([g for d, g in GAIN.items() if d != "d"]))
    assert abs(usual / (GAIN["d"] / others) - 1) < 0.15, usual


def test_local_plumes_in_clean_air_do_not_teach_the_pair_a_higher_usual_ratio(
        tmp_path: Path) -> None:
    # "d" and its nearest neighbour "n1" share a plume (2.2×, two hours) every eight
    # hours for four days in clean air (2–5 µg/m³), readings every five minutes, the
    # shipped settings. There a plume is within the sensors' noise in µg/m³ and was
    # learned: the pair's usual ratios crept up plume by plume until, in hazier air, a
    # plume they shared was called d's fault (the SDS011 neighbourhood: local pollution
    # called a fault 0.025 → 0.125)
    days = 4
    n = days * 288 + 60
    t = np.arange(n)
    x = 3.5 + 1.5 * np.sin(t / 40.0)
    plume = np.ones(n)
    for s in range(60, days * 288, 96):
        plume[s:s + 24] = 2.2
    last = days * 288 + 10
    x[last - 10:] = 30.0  # hazier air, and one more plume in it
    plume[last:last + 24] = 2.2
    rng = np.random.default_rng(12)
    readings = {}
    for d in DEVICES:
        y = GAIN[d] * x * (1 + 0.03 * rng.standard_normal(n)) + 0.8 * rng.standard_normal(n)
        if d in ("d", "n1"):
            y = y * plume
        readings[d] = np.round(np.maximum(y, 0.0), 1).tolist()
    e = engine_from(tmp_path, SHIFT_HOURLY, registry())
    ev = run_series(e, readings, step_ms=5 * MIN)
    assert states(ev, "shift", "d") == []
    rule = e.rules[0]
    # n1 reads above the sensors' noise between plumes and learns its ratio there
    others = float(np.median([g for o, g in GAIN.items() if o != "n1"]))
    usual = float(np.exp(rule.usual.log_ratio[e.fleet.index["n1"]]))
    assert abs(usual / (GAIN["n1"] / others) - 1) < 0.15, usual


def hazy_then_clean(rng: np.random.Generator, clean: float, n: int = 240) -> np.ndarray:
    """The air a minute apart: 90 minutes of hazy air (the usual ratios are learned
    there, above `min_excess`), then it clears to about `clean` µg/m³ by minute 120 and
    stays."""
    x = air(n, seed=int(rng.integers(2**16)))
    x[90:120] = np.linspace(x[90], clean, 30)
    x[120:] = clean * (1 + 0.1 * np.sin(np.arange(n - 120) / 15.0))
    return x


def clean_readings(x: np.ndarray, noise: float, seed: int,
                   scale: dict[str, np.ndarray] | None = None, share: float = 0.02
                   ) -> dict[str, list[float]]:
    """Each device's readings of `x` (its gain, `share` of it as noise, `noise` µg/m³
    added, times `scale` where given), rounded to 0.1 µg/m³ as low-cost sensors report."""
    rng = np.random.default_rng(seed)
    out = {}
    for d in DEVICES:
        y = GAIN[d] * x * (1 + share * rng.standard_normal(x.size)) \
            + noise * rng.standard_normal(x.size)
        if scale and d in scale:
            y = y * scale[d]
        out[d] = np.round(np.maximum(y, 0.0), 1).tolist()
    return out


#: the clean-air stories: each example runs the engine over hundreds of minutes. Drawn
#: the same way every run: the rule is a statistical judge, and in noisy clean air it
#: raises a one-reading false alert now and then (2 of 600 drawn examples of the noise
#: story, about 0.002 a device-day; the evaluation's clean neighbourhoods: 0.005–0.01,
#: under the issue's 0.05), so fresh draws on every CI run would fail it at random;
#: the rate itself is measured in bench/anomaly_eval.py
clean_air_examples = settings(max_examples=8, deadline=None, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.function_scoped_fixture])


@clean_air_examples
@given(clean=st.floats(3.0, 5.0), at=st.integers(240, 300), seed=st.integers(0, 2**16))
def test_a_step_in_clean_air_fires_when_the_neighbours_agree_tightly(
        tmp_path: Path, clean: float, at: int, seed: int) -> None:
    # a few µg/m³, every sensor within 1 % of its usual ratio (and the 0.1 µg/m³ the
    # sensors report in): a ×1.6 step adds 1.4–3 µg/m³, under `min_excess` (5), but far
    # beyond the ratio's own noise; found at its second reading as in hazy air (before:
    # never, the step was under the floor). The margin over `ratio` (1.5) is 6.5 %, so
    # the noise is kept well under it
    x = hazy_then_clean(np.random.default_rng(seed), clean, n=340)
    e = engine_from(tmp_path, SHIFT, registry())
    ev = run_series(e, clean_readings(x, 0.0, seed, {"d": step_at(x.size, at, 1.6, 30)},
                                      share=0.01))
    got = states(ev, "shift", "d")
    assert got[:1] == [(at + 1, "firing")], got
    assert states(ev, "shift") == got  # no neighbour blamed


@clean_air_examples
@given(clean=st.floats(2.0, 4.0), noise=st.floats(0.5, 1.5), seed=st.integers(0, 2**16))
def test_clean_air_without_a_step_raises_nothing_whatever_its_noise(
        tmp_path: Path, clean: float, noise: float, seed: int) -> None:
    # the same clean air with no step: neither the neighbours' few-% noise nor the
    # additive noise of low-cost sensors (0.5–1.5 µg/m³, a third of the reading: far
    # beyond the spread the ratios learned in hazy air) is a shift; the noise is
    # judged at the level of the reading, from the neighbours' disagreement now
    x = hazy_then_clean(np.random.default_rng(seed), clean, n=480)
    for extra in (0.0, noise):
        e = engine_from(tmp_path, SHIFT, registry())
        assert states(run_series(e, clean_readings(x, extra, seed)), "shift") == [], extra


def test_a_usual_ratio_learned_through_a_fault_in_the_first_hour_is_learned_afresh(
        tmp_path: Path) -> None:
    # "d" drifts to 4× over its first hour, in clean air: its first updates learn about
    # twice its true ratio. Once the air is hazy its true level is a "shift" against
    # that, alerted and held (nothing is learned while it fires); a real ×1.7 shift
    # later brought it near the wrong ratio, resolved the alert and was learned, and
    # the end of the real fault fired instead. A young usual ratio that the device sits
    # on one side of for hours is doubted, even while its alert fires: that alert
    # resolves, the true ratio is learned and the real shift alone is alerted
    n = 900
    x = 3.0 * (1 + 0.1 * np.sin(np.arange(n) / 15.0))
    x[400:] = air(n - 400, seed=6)
    scale = np.ones(n)
    scale[:60] = np.linspace(1, 4, 60)
    scale[700:730] = 1.7
    readings = clean_readings(x, 0.8, 7, {"d": scale})
    others = float(np.median([g for o, g in GAIN.items() if o != "d"]))
    got = {}
    for doubt in (24, 0):
        e = engine_from(tmp_path, SHIFT + f"    usual_doubt: {doubt}\n", registry())
        got[doubt] = states(run_series(e, readings), "shift")
        usual = float(np.exp(e.rules[0].usual.log_ratio[e.fleet.index["d"]]))
        assert (abs(usual / (GAIN["d"] / others) - 1) < 0.1) == (doubt > 0), (doubt, usual)
        # the slow anchor is learned afresh with it, or it would hold the fault for a week
        anchor = float(np.exp(e.rules[0].usual.anchor[e.fleet.index["d"]]))
        assert (abs(anchor / (GAIN["d"] / others) - 1) < 0.1) == (doubt > 0), (doubt, anchor)
    assert got[0] == [(422, "firing"), (700, "resolved"), (731, "firing")]
    fired, resolved, real, end = got[24]
    assert fired == (422, "firing") and resolved[1] == "resolved"
    assert 422 + 12 * 10 <= resolved[0] <= 422 + 24 * 10  # a dozen-odd updates of doubt
    assert (real, end) == ((701, "firing"), (730, "resolved"))


def shipped_shift_with_a_dip(at: int) -> tuple[list[tuple[int, str]], int]:
    """The shipped `sensor_shift` over 500 one-minute readings: device "d" reads 1.7×
    from reading `at` for 70 readings, back at 1.0× for readings at+30 to at+32. Its
    transitions, and the rule's `keep_firing_for` in minutes."""
    from alert_rules.engine import Engine

    rules = load_rules(DEFAULT_RULES.with_name("sensor_fault_rules.yaml"))
    keep = next(r for r in rules if r.name == "sensor_shift").keep_firing_for_ms // MIN
    steps = 500  # the readings do not depend on the setting
    assert at + 70 + keep < steps
    scale = step_at(steps, at, 1.7, 70)
    scale[at + 30:at + 33] = 1.0
    ev = run_series(Engine(rules, registry=registry()), sensed(air(steps), {"d": scale}))
    return states(ev, "sensor_shift"), keep


def test_a_shift_that_dips_back_for_a_moment_stays_one_alert(tmp_path: Path) -> None:
    # A loose sensor reads 1.7× its neighbours, comes back for three readings, and
    # leaves again: one fault, one alert for the technician (the shipped rule holds it
    # for `keep_firing_for`; without it, two); it resolves once the sensor has been back
    # that long. The fault comes after the usual ratio is trusted (3 h of readings).
    got, keep = shipped_shift_with_a_dip(at=200)
    assert got == [(201, "firing"), (270 + keep, "resolved")]


def test_a_young_device_s_fault_that_ends_is_no_new_fault(tmp_path: Path) -> None:
    # Half an hour after installation (its usual ratio not yet learned) a sensor reads
    # 1.7× its neighbours, is back for three readings, leaves again, and is mended. Its
    # return is judged from where it was before the fault, not from the faulty level:
    # no second alert, and the one alert resolves. Before, the return was a shift down
    # that never resolved (the usual ratio is frozen while an alert fires).
    got, keep = shipped_shift_with_a_dip(at=30)
    assert got == [(31, "firing"), (100 + keep, "resolved")]


def test_a_neighbour_s_clean_air_noise_does_not_share_a_fault(tmp_path: Path) -> None:
    """In clean air a sensor reading 1 µg/m³ that reads 6 for a while moves its log as
    far as the faulty device's step from 2.4 to 42: it shares the step in log, not in
    µg/m³. Before, it was taken for a plume over both, and the fault's alert resolved and
    fired again (one fault, two alerts for the technician)."""
    e = engine_from(tmp_path, SHIFT, registry())
    x = 3.0 + 0.5 * np.sin(np.arange(60) / 5.0)
    readings = sensed(x)
    readings["n1"] = [6.0 if 36 <= i < 40 else 1.0 for i in range(60)]
    readings["d"] = [v + (40.0 if 30 <= i < 50 else 0.0) for i, v in enumerate(readings["d"])]
    ev = run_series(e, readings)
    assert states(ev, "shift", "d") == [(31, "firing"), (50, "resolved")]
    assert states(ev, "shift") == states(ev, "shift", "d")


def test_a_slow_drift_the_usual_ratio_learns_is_judged_from_the_anchor(
        tmp_path: Path) -> None:
    """Two days at its usual ratio, then "d" drifts to 2× its neighbours over two days
    (a fouling inlet, an ageing laser), holds there half a day and is mended. Each
    half-hour update moves the 12-hour usual ratio within `ratio`×, so it learns the
    drift and sees no departure; the week-long anchor does: one alert, from within the
    drift until the sensor is mended. Without the anchor nothing fires during the drift,
    and the repair is a new fault, a step down from the ratio it learned."""
    flat, ramp, hold, after = 96, 96, 24, 24
    n = flat + ramp + hold + after
    scale = np.ones(n)
    scale[flat:flat + ramp] = 2.0 ** (np.arange(1, ramp + 1) / ramp)
    scale[flat + ramp:flat + ramp + hold] = 2.0
    readings = sensed(air(n, seed=4), {"d": scale})
    half_hour = SHIFT.replace("usual_every: 10m  # the usual ratio trusted after an hour "
                              "(six updates)", "usual_every: 30m")
    got = {}
    for anchor in ("7d", "0"):
        e = engine_from(tmp_path, half_hour + f"    usual_anchor: {anchor}\n", registry())
        got[anchor] = states(run_series(e, readings, step_ms=30 * MIN), "shift")
    fired, resolved = got["7d"]
    assert fired[1] == "firing" and flat + ramp // 2 <= fired[0] < flat + ramp, got
    assert resolved == (flat + ramp + hold, "resolved"), got
    assert [s for i, s in got["0"] if i < flat + ramp + hold] == [], got
    assert got["0"][:1] == [(flat + ramp + hold + 1, "firing")], got


def test_a_snapshot_from_before_the_anchor_starts_it_at_the_usual_ratio() -> None:
    from alert_rules.rule_sensor_fault import UsualRatio

    saved = UsualRatio()
    saved.fit(3)
    saved.log_ratio[:] = [0.1, np.nan, -0.3]
    saved.count[:] = [30, 0, 7]
    old = {k: v for k, v in saved.arrays().items() if k != "anchor"}
    loaded = UsualRatio()
    loaded.load(old)
    np.testing.assert_array_equal(loaded.anchor, [0.1, np.nan, -0.3])
    loaded.anchor[0] = 9.0  # its own column, not the usual ratio's
    assert loaded.log_ratio[0] == 0.1
