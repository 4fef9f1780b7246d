"""The streaming detector, one fault family at a time, on synthetic series: a daily
cycle with noise (5-minute readings), with the fault injected after a week."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from alert_rules.anomaly import HOUR_MS, Detector

STEP_MS = 600_000  # 10-minute readings
DAY = 144
START = 7 * DAY  # the fault begins after a week


def clean(seed: int, n: int = 9 * DAY) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    daily = 1 + 0.3 * np.sin(2 * np.pi * t / DAY)
    return np.round(40 * daily * (1 + 0.08 * rng.standard_normal(n)), 1)


def run_rows(xs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each row of xs a device, all through one detector; scores in the same shape."""
    d = Detector()
    rows = np.arange(xs.shape[0], dtype=np.int64)
    ts = 1_700_000_000_000 + STEP_MS * np.arange(xs.shape[1], dtype=np.int64)
    return np.array([d.update(rows, xs[:, i], np.full(rows.size, ts[i]))
                     for i in range(xs.shape[1])]).T


def run(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    d = Detector()
    row = np.zeros(1, np.int64)
    ts = 1_700_000_000_000 + STEP_MS * np.arange(x.size, dtype=np.int64)
    return np.array([d.update(row, x[i:i + 1], ts[i:i + 1])[0] for i in range(x.size)])


def first_alarm(s: npt.NDArray[np.float64], thr: float = 0.9) -> int | None:
    hits = np.flatnonzero(s[START:] >= thr)
    return int(hits[0]) if hits.size else None


def with_fault(kind: str, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    y = x.copy()
    seg = slice(START, START + 36)
    if kind == "spike":
        y[START] = x[START] * 4
    elif kind == "stuck":
        y[seg] = x[START]
    elif kind == "shift":
        y[START:] = x[START:] * 2.2
    elif kind == "variance":
        y[seg] = x[seg] + np.random.default_rng(9).normal(0, 20, 36)
    elif kind == "zeros":
        y[START:START + 6] = 0.0
    elif kind == "drift":
        y[START:] = x[START:] + np.linspace(0, 120, x.size - START)
    return y


GAP = "not caught by the single-series detector yet (see docs/decisions.md)"


@pytest.mark.parametrize(("kind", "within"), [
    ("spike", 2), ("stuck", 12), ("shift", 12), ("zeros", 2), ("variance", 36),
    pytest.param("drift", DAY, marks=pytest.mark.xfail(strict=True, reason=GAP))])
def test_each_fault_family_is_caught(kind: str, within: int) -> None:
    seeds = range(3)
    xs = [clean(seed) for seed in seeds]
    scores = run_rows(np.vstack([*xs, *(with_fault(kind, x) for x in xs)]))
    for seed in seeds:
        assert first_alarm(scores[seed]) is None, f"clean series {seed} alarmed"
        at = first_alarm(scores[len(xs) + seed])
        assert at is not None and at < within, (kind, seed, at)


def test_scale_free_same_scores_on_x_and_1000x() -> None:
    xs = np.vstack([with_fault(k, clean(4)) for k in ("shift", "stuck", "variance")])
    a, b = run_rows(np.vstack([xs, 1000 * xs])).reshape(2, 3, -1)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_new_device_is_quiet_in_its_first_readings() -> None:
    # the first day of a device: no baseline yet, ordinary readings must not alarm
    assert (run_rows(np.vstack([clean(s)[:DAY] for s in range(5, 9)])) < 0.9).all()


def test_a_broken_daily_pattern_is_seen_by_the_daily_statistic() -> None:
    rng = np.random.default_rng(3)
    n = 12 * DAY
    t = np.arange(n)
    x = 50 + 40 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 2, n)
    y = x.copy()
    y[10 * DAY:] = 50 - 40 * np.sin(2 * np.pi * t[10 * DAY:] / DAY) + rng.normal(0, 2, 2 * DAY)
    det = Detector()
    row = np.zeros(1, np.int64)
    ts = 1_700_000_000_000 + STEP_MS * np.arange(n, dtype=np.int64)
    daily = []
    for i in range(n):
        det.update(row, y[i:i + 1], ts[i:i + 1])
        daily.append(float(det.parts["daily"][0]))
    d = np.array(daily)
    assert d[10 * DAY:11 * DAY].max() > 3 * d[5 * DAY:10 * DAY].max()


def test_vectorized_rows_match_one_device_at_a_time() -> None:
    xs = [with_fault(k, clean(i))[:2 * DAY] for i, k in enumerate(("spike", "stuck"))]
    out = run_rows(np.vstack(xs))
    for j, x in enumerate(xs):
        np.testing.assert_allclose(out[j], run(x), atol=1e-12)


class CountingDetector(Detector):
    steps: int = 0

    def update(self, rows: npt.NDArray[np.int64], x: npt.NDArray[np.float64],
               ts: npt.NDArray[np.int64] | None = None) -> npt.NDArray[np.float64]:
        CountingDetector.steps += 1
        return super().update(rows, x, ts)


def test_a_backlog_costs_a_bounded_number_of_steps_whatever_its_length() -> None:
    # 200 devices × 2,000 one-second readings in one call: fed in at most max_steps
    # vectorized steps (a bucket per step), not one numpy pass per reading
    d = CountingDetector()
    CountingDetector.steps = 0
    rows = np.repeat(np.arange(200, dtype=np.int64), 2000)
    ts = 1_700_000_000_000 + 1000 * np.tile(np.arange(2000, dtype=np.int64), 200)
    x = np.tile(clean(3, 2000), 200)
    d.feed(rows, x, ts)
    assert 1 <= CountingDetector.steps <= d.max_steps + 1
    assert (d.cols["seen"][:200] == CountingDetector.steps).all()


def test_feed_is_one_observation_per_device_and_bucket_in_time_order() -> None:
    # readings shuffled across devices and time; device 0 has 3 one-minute buckets with
    # two readings each, device 1 a single reading: the same as a one-row detector fed
    # each bucket's mean at its newest reading's time
    t0 = 1_700_000_000_000 // 60_000 * 60_000
    ts = np.array([t0 + 1000, t0 + 30_000, t0 + 61_000, t0 + 90_000, t0 + 125_000,
                   t0 + 130_000, t0 + 5000], np.int64)
    x = np.array([10.0, 12.0, 20.0, 22.0, 30.0, 34.0, 7.0])
    rows = np.array([0, 0, 0, 0, 0, 0, 1], np.int64)
    perm = np.random.default_rng(0).permutation(ts.size)
    d = Detector()
    d.feed(rows[perm], x[perm], ts[perm])
    ref = Detector()
    one = np.zeros(1, np.int64)
    for mean, t in ((11.0, t0 + 30_000), (21.0, t0 + 90_000), (32.0, t0 + 130_000)):
        ref.update(one, np.array([mean]), np.array([t], np.int64))
    for k in ("level", "scale", "seen", "last", "first_ms"):
        assert d.cols[k][0] == ref.cols[k][0], k
    assert d.cols["seen"][1] == 1 and d.cols["last"][1] == 7.0


def test_a_spike_early_in_a_batch_is_still_the_devices_score() -> None:
    # a week of 10-minute readings, then one call with a spike followed by normal
    # readings: the device's score is the highest of its steps, not the last one's
    x = clean(5)
    d = Detector()
    row = np.zeros(1, np.int64)
    ts = 1_700_000_000_000 + STEP_MS * np.arange(x.size, dtype=np.int64)
    for i in range(START):
        d.update(row, x[i:i + 1], ts[i:i + 1])
    tail = x[START:START + 4].copy()
    tail[0] += 400
    d.feed(np.zeros(4, np.int64), tail, ts[START:START + 4])
    assert d.score[0] > 0.9


def test_a_single_reading_spike_is_told_from_an_episode_that_stays() -> None:
    # the same jump ×4, once for one reading (a glitch) and once for good (an episode
    # beginning): the vspike statistic scores the first one reading late, not the second
    x = clean(11)
    glitch, episode = x.copy(), x.copy()
    glitch[START] = x[START] * 4
    episode[START:] = x[START:] * 4
    det = Detector()
    rows = np.arange(2, dtype=np.int64)
    ts = 1_700_000_000_000 + STEP_MS * np.arange(x.size, dtype=np.int64)
    v = []
    for i in range(START + 3):
        det.update(rows, np.array([glitch[i], episode[i]]), np.full(2, ts[i]))
        v.append(det.parts["vspike"].copy())
    vs = np.array(v)
    assert vs[START + 1, 0] > 3 * vs[:START, 0].max()
    assert vs[START:, 1].max() < vs[:START, 1].max() * 1.5


def test_a_new_regime_fires_once_and_is_then_the_baseline() -> None:
    # a level that steps ×3 and stays: after a few readings the level has moved there,
    # so the spike statistic is back to its ordinary size instead of staying high
    x = clean(12)
    y = x.copy()
    y[START:] = x[START:] * 3
    det = Detector()
    row = np.zeros(1, np.int64)
    ts = 1_700_000_000_000 + STEP_MS * np.arange(x.size, dtype=np.int64)
    spike = []
    for i in range(x.size):
        det.update(row, y[i:i + 1], ts[i:i + 1])
        spike.append(float(det.parts["spike"][0]))
    s = np.array(spike)
    assert s[START] > 5 * s[START - DAY:START].mean()
    assert s[START + 6:START + 24].max() < s[START - DAY:START].max() * 2


def test_point_tests_are_stricter_at_a_higher_reading_rate() -> None:
    # the same series read every minute and every hour: per reading, the one-minute
    # device needs a larger statistic for the same score (alarms are per device-day)
    x = clean(13, 2 * DAY)
    scores = {}
    for step in (60_000, HOUR_MS):
        det = Detector()
        row = np.zeros(1, np.int64)
        ts = 1_700_000_000_000 + step * np.arange(x.size, dtype=np.int64)
        for i in range(x.size):
            det.update(row, x[i:i + 1], ts[i:i + 1])
        # one big V: the same reading sequence at both rates
        out = [det.update(row, np.array([v]), np.array([ts[-1] + step * (k + 1)]))[0]
               for k, v in enumerate((x[-1] * 3, x[-1]))]
        scores[step] = out[1]
    assert scores[HOUR_MS] > 0.9 > scores[60_000]


series = st.lists(st.floats(0.0, 1e4, allow_nan=False, allow_infinity=False),
                  min_size=1, max_size=120)


@settings(max_examples=40, deadline=None)
@given(xs=series, factor=st.sampled_from([1e-3, 0.37, 10.0, 1000.0, 2.0 ** 20]),
       step_s=st.integers(1, 7200))
@example(xs=[0.0] * 10 + [5e-324, 1.0, 0.0], factor=1.0, step_s=1)  # z² overflowed: NaN
def test_scores_are_in_0_1_and_the_same_at_any_scale(xs: list[float], factor: float,
                                                     step_s: int) -> None:
    x = np.array(xs)
    both = np.vstack([x, x * factor])
    det = Detector()
    rows = np.arange(2, dtype=np.int64)
    out = np.array([det.update(rows, both[:, i], np.full(2, 1_700_000_000_000 + i * step_s
                                                          * 1000, np.int64))
                    for i in range(x.size)])
    assert np.isfinite(out).all() and (out >= 0).all() and (out <= 1).all()
    assert out.shape == (x.size, 2)  # one score per reading and device
    # the scaled series is the same series only where scaling loses no digits: a
    # subnormal reading times 0.001 is 0
    if all(v == 0 or min(v, v * factor) >= 1e-300 for v in xs):
        np.testing.assert_allclose(out[:, 0], out[:, 1], atol=1e-6)


def test_devices_in_any_row_order_score_as_the_whole_range_in_order() -> None:
    # the whole range in order is stepped through slices, any other set of rows through
    # gathers: both must give the same state and scores
    xs = np.vstack([with_fault(k, clean(20 + i))[:DAY] for i, k in
                    enumerate(("spike", "stuck", "shift"))])
    ts = 1_700_000_000_000 + STEP_MS * np.arange(DAY, dtype=np.int64)
    ordered, shuffled = Detector(), Detector()
    rows = np.arange(3, dtype=np.int64)
    perm = np.array([2, 0, 1], dtype=np.int64)
    for i in range(DAY):
        a = ordered.update(rows, xs[:, i], np.full(3, ts[i]))
        b = shuffled.update(perm, xs[perm, i], np.full(3, ts[i]))
        np.testing.assert_allclose(a[perm], b, atol=1e-12)
    for k, v in ordered.arrays().items():
        np.testing.assert_allclose(v[:3], shuffled.arrays()[k][:3], atol=1e-12, err_msg=k)


def test_a_zero_is_judged_against_the_devices_own_runs_of_zeros() -> None:
    # a count of about 3 a reading is 0 one reading in twenty: each 0 is no dead sensor
    counts = np.random.default_rng(4).poisson(3, 9 * DAY).astype(np.float64)
    s = run(counts)
    zeros = np.flatnonzero(counts[START:] == 0) + START
    assert zeros.size > 5
    assert (s[zeros] < 0.9).all()  # the zeros statistic alone would say 0.9 each
    # a device whose readings are clear of zero: its first 0 is a dead laser at once
    x = with_fault("zeros", clean(4))
    assert run(x)[START] >= 0.9


def episode_then_clean_air(seed: int) -> npt.NDArray[np.float64]:
    """Hourly readings: five days of an episode around 380 µg/m³ with steps of ±45, a
    front, then two days around 80 with steps of ±4."""
    rng = np.random.default_rng(seed)
    high, low = [380.0], [80.0]
    for _ in range(5 * 24 - 1):
        high.append(high[-1] + 0.2 * (380 - high[-1]) + rng.normal(0, 45))
    for _ in range(2 * 24 - 1):
        low.append(low[-1] + 0.2 * (80 - low[-1]) + rng.normal(0, 4))
    return np.round(np.maximum(np.r_[high, 200.0, low], 1.0))


@pytest.mark.parametrize("seed", range(4))
def test_a_relative_spike_at_a_low_level_amid_large_steps_at_high_levels(seed: int) -> None:
    # +90 µg/m³ for one hour at 80 (about 80 → 170 → 75) after days of ±45 steps at
    # 380: a step that is ordinary at 380 is a glitch at 80, because the air's
    # reading-to-reading change grows with its level; judged on the raw series the
    # episode's steps hid it (scored 0.82–0.87)
    x = episode_then_clean_air(seed)
    at = x.size
    y = np.r_[x, x[-1] + 90, x[-1] - 5, x[-1]]
    det = Detector()
    row = np.zeros(1, np.int64)
    ts = 1_700_000_000_000 + HOUR_MS * np.arange(y.size, dtype=np.int64)
    for i in range(at + 2):
        score = det.update(row, y[i:i + 1], ts[i:i + 1])[0]
    assert score >= 0.9, score
    assert det.about_previous[0]  # the vspike statistic decided: about the +90 reading


def test_a_state_saved_when_the_v_was_judged_on_the_raw_series_is_carried_over() -> None:
    # a state with the raw reading-to-reading change (`dscale`) and no `vscale`: the
    # divisor is carried over to the square root, so ordinary readings after the load
    # do not alarm (a zero divisor would call every small V a spike) and it is close
    # to what the detector learns itself
    x = clean(30, 3 * DAY)
    det = Detector()
    row = np.zeros(1, np.int64)
    ts = 1_700_000_000_000 + STEP_MS * np.arange(x.size, dtype=np.int64)
    for i in range(2 * DAY):
        det.update(row, x[i:i + 1], ts[i:i + 1])
    saved = {k: v.copy() for k, v in det.arrays().items() if k not in ("vscale", "vfast")}
    saved["dscale"] = np.full_like(saved["mag"], np.abs(np.diff(x[:2 * DAY])).mean())
    loaded = Detector()
    loaded.load(saved)
    ratio = loaded.cols["vscale"][0] / det.cols["vscale"][0]
    assert 0.5 < ratio < 2.0, ratio
    after = [loaded.update(row, x[i:i + 1], ts[i:i + 1])[0] for i in range(2 * DAY, 3 * DAY)]
    assert max(after) < 0.9


def swing(det: Detector, first: int, last: int, probe: float | None = None) -> list[float]:
    """Readings first..last-1 of a device swinging between 40 and 60, 10 minutes apart,
    then `probe` (if any) at the next time; the extreme statistic after each."""
    x = [50.0 + 10.0 * np.sin(i / 5.0) for i in range(first, last)]
    row = np.zeros(1, np.int64)
    out = []
    for i, v in enumerate([*x, *([] if probe is None else [probe])], first):
        det.update(row, np.array([v]), np.array([1_700_000_000_000 + i * STEP_MS]))
        out.append(float(det.parts["extreme"][0]))
    return out


def test_a_reading_beyond_the_devices_whole_range_is_an_extreme_below_the_alert() -> None:
    # a device that has swung between 40 and 60 for 200 readings: 61.5 is beyond the
    # range by more than 5 % of it (61), 60.9 is not; the extreme scores 0.8 (z = 4),
    # under the anomaly rule's 0.9; in its first readings the range is not yet judged
    for after, probe, extreme in ((200, 61.5, True), (200, 60.9, False), (30, 61.5, False),
                                  (200, 39.1, False), (200, 38.5, True)):
        det = Detector()
        assert (swing(det, 0, after, probe)[-1] == det.extreme_z) == extreme, (after, probe)
    assert det.extreme_z ** 2 / (det.extreme_z ** 2 + det.z0 ** 2) == pytest.approx(0.8)
    # off when its tolerance is 0
    assert swing(Detector(extreme_tol=0.0), 0, 200, 500.0)[-1] == 0.0


def test_a_state_saved_before_the_range_was_kept_learns_it_afresh_before_judging() -> None:
    # restored from a state without the range, a device's next readings are not judged
    # against the two or three it has read since: its range is judged after 60 of its own
    det = Detector()
    swing(det, 0, 200)
    old = {k: v for k, v in det.arrays().items() if k not in ("lo", "hi", "in_range")}
    restored = Detector()
    restored.load(old)
    extremes = swing(restored, 200, 300)
    # the first readings after the restart widen a tiny range at nearly every step
    assert not any(extremes[:60]), extremes[:60]
    assert restored.cols["in_range"][0] == 100



FIVE_MIN = 300_000
DAY_5 = 288  # 5-minute readings a day


def on_off(days: int, phase_h: float = 7.3) -> npt.NDArray[np.float64]:
    """A device on for half the day and off for the other half (5-minute readings),
    switched at the same time every day: a fan on a timer, a plant's shift."""
    hour = (np.arange(days * DAY_5) * FIVE_MIN / HOUR_MS - phase_h) % 24
    return np.where(hour < 12, 80.0, 20.0)


def scores_of(x: npt.NDArray[np.float64], **params: bool | float) -> npt.NDArray[np.float64]:
    det = Detector(**params)  # type: ignore[arg-type]
    row = np.zeros(1, np.int64)
    ts = 1_700_000_000_000 + FIVE_MIN * np.arange(x.size, dtype=np.int64)
    return np.array([det.update(row, x[i:i + 1], ts[i:i + 1])[0] for i in range(x.size)])


@pytest.mark.parametrize("without", [{"context": False}, {"context_share": 0.0},
                                     {"day_reading": 0.0}])
def test_a_daily_on_off_alarms_at_every_switch_without_its_context(
        without: dict[str, bool | float]) -> None:
    s = scores_of(on_off(14), **without)[5 * DAY_5:]
    assert (s >= 0.8).sum() >= 18  # nine days, two switches a day


def test_a_daily_on_off_is_learned_and_a_missed_switch_or_a_spike_is_not() -> None:
    x = on_off(14)
    assert scores_of(x)[5 * DAY_5:].max() < 0.8  # the profile is trusted after 3 days
    day = 12 * DAY_5
    # one day the device does not come on: judged against the same hours before
    y = x.copy()
    y[day:day + DAY_5] = 20.0
    assert scores_of(y)[day:day + DAY_5].max() >= 0.9
    # and a spike on the timer is still a spike (judged when the next reading is known)
    z = x.copy()
    z[day + 30] *= 4
    assert scores_of(z)[day + 30:day + 32].max() >= 0.9


def test_the_statistic_that_made_a_score_is_kept_and_a_batch_keeps_its_peaks() -> None:
    det = Detector()
    rows = np.arange(3, dtype=np.int64)
    x = np.vstack([clean(s)[:DAY] for s in range(3)])
    x[0, 100] *= 4  # a spike, judged at the reading after it
    x[1, 100:] = x[1, 100]  # stuck from reading 100
    ts = 1_700_000_000_000 + STEP_MS * np.arange(DAY, dtype=np.int64)
    seen: dict[int, set[str | None]] = {0: set(), 1: set(), 2: set()}
    for i in range(DAY):
        score = det.update(rows, x[:, i], np.full(3, ts[i]))
        names = det.statistic(rows)
        for r, name in enumerate(names):
            seen[r].add(name)
            assert (name is None) == (score[r] < 0.5), (i, r, name, score[r])
    assert "vspike" in seen[0] and "stuck" in seen[1]
    assert {"vspike", "stuck"}.isdisjoint(seen[2])
    # a batch of readings fed at once: the device's score is its highest step's, and so
    # is the statistic named, not the last step's
    fed = Detector()
    one = np.zeros(120, np.int64)
    y = clean(5)[:120].copy()
    fed.feed(one[:100], y[:100], ts[:100])
    y[105] *= 4
    fed.feed(one[:8], y[100:108], ts[100:108])  # the spike is judged at 106, then calm
    assert fed.score[0] >= 0.9 and fed.statistic(one[:1]) == ["vspike"]


def count_with_nights(days: int, seed: int = 0) -> npt.NDArray[np.float64]:
    """A count at 5-minute readings (requests, messages) about 10 by day and 2 at night:
    some nights read 0 now and then, the days never do."""
    hour = np.arange(days * DAY_5) * FIVE_MIN / HOUR_MS % 24
    mean = 10 * (1 + 0.8 * np.sin(2 * np.pi * (hour - 6) / 24))
    return np.random.default_rng(seed).poisson(mean).astype(np.float64)


def first_zero_of_each_night(x: npt.NDArray[np.float64], after: int) -> npt.NDArray[np.int64]:
    zeros = np.flatnonzero(x[after:] == 0) + after
    days = (zeros + 6 * 12) // DAY_5  # nights counted from 18:00
    return zeros[np.r_[True, np.diff(days) > 0]]


@pytest.mark.parametrize("seed", [0, 1])
def test_zeros_at_the_hours_that_read_0_on_recent_days_are_no_dead_sensor(seed: int) -> None:
    x = count_with_nights(21, seed)
    firsts = first_zero_of_each_night(x, 7 * DAY_5)
    assert firsts.size >= 10
    # the night's first 0, once its hours have read 0 on a few nights: no dead laser
    assert (scores_of(x)[firsts] >= 0.9).sum() <= 2
    # without the hours' memory each night's first 0 is judged as one (the running rate
    # of zeros has forgotten the last night's over the day)
    assert (scores_of(x, a_zero_day=0.0)[firsts] >= 0.9).sum() >= firsts.size // 2
    # a 0 in the afternoon, hours that never read 0 (and far enough from the night for
    # the running rate of zeros to have forgotten it), is still judged at once
    at = 18 * DAY_5 + 17 * 12  # 17:00 of day 18, at 5 minutes
    y = x.copy()
    y[at] = 0.0
    assert scores_of(y)[at] >= 0.9


def test_a_young_devices_days_of_zeros_weigh_as_a_running_mean() -> None:
    """A device new this week whose readings are clear of zero but read 0 at the same
    hour on each of its first nights: the second is still a surprise, the third not
    quite (with a fixed weight per day the third would be judged as the first)."""
    x = clean(5, 4 * DAY)
    at = [60 + k * DAY for k in range(3)]
    x[at] = 0.0
    s = run(x)
    assert s[at[0]] >= 0.9 and s[at[1]] >= 0.9
    assert s[at[2]] < 0.9


def test_the_hours_zeros_are_saved_moved_with_a_device_and_forgotten_with_it() -> None:
    x = count_with_nights(5)
    det = Detector()
    rows = np.array([0, 1], np.int64)
    ts = 1_700_000_000_000 + FIVE_MIN * np.arange(x.size, dtype=np.int64)
    for i in range(x.size):
        det.update(rows, np.array([x[i], x[i] + 5.0]), np.full(2, ts[i]))
    assert det.zero_profile[0].max() > 0 and det.zero_profile[1].max() == 0
    saved = det.arrays()
    back = det.blank()
    back.load(saved)
    np.testing.assert_array_equal(back.zero_profile, det.zero_profile)
    # a snapshot saved before the hours' zeros were kept: none yet, nothing refused
    older = det.blank()
    older.load({k: v for k, v in saved.items() if k != "zero_profile"})
    assert older.zero_profile.shape == det.zero_profile.shape
    assert not older.zero_profile.any()
    moved = det.blank()
    moved.copy_from(np.array([3], np.int64), det, np.array([0], np.int64))
    np.testing.assert_array_equal(moved.zero_profile[3], det.zero_profile[0])
    det.clear(np.array([0], np.int64))
    assert not det.zero_profile[0].any()
