"""A streaming anomaly detector, vectorized across devices, O(1) per reading.

Each device keeps a few exponentially weighted statistics (numpy columns, no windows).
A reading is judged by these statistics, each expressed in units of its own running spread
on this device, so nothing depends on the series' units (x and 1000·x score the same):

- vspike: the previous reading against both of its neighbours (a V: up and back down,
  or down and back up), on the square root of the series, over the device's running
  reading-to-reading change there (and at least a share of its recent change) — a glitch
  is one reading that comes back, an episode rises and stays; judged one reading late,
  when the reading after it is known;
- spike: the residual against a robust level, in robust scales (Huber-clipped updates,
  so an outlier does not drag the baseline; `adapt_run` readings in a row clipped on one
  side are a new regime and the level jumps there, so a regime change fires once);
- shift: a fast EWMA of the residuals (an EWMA control chart), over its own running RMS
  — a level shift moves it for many readings in a row;
- variance: log of the fast over the slow residual scale, over its own running RMS —
  noise that grows (a failing fan) or collapses (a sensor that stops sensing);
- drift: a medium-speed level against a slow one, over its own running RMS;
- daily: the fast level against this device's own hour-of-day profile of its readings
  (24 bins), over that profile's running RMS — a broken daily pattern; not where a bin
  beside holds it (a day a little early or late) or the level is catching up with a
  step to a reading a bin beside holds;
- stuck: the surprise of a run of identical readings, −run·log(p), with p the device's
  own running rate of repeats (a sensor at 0.1 µg/m³ resolution in clean air repeats
  often; one that repeats rarely is stuck after a few);
- zeros: an exact 0 from a device well clear of zero, against its own rate of zeros
  and the hours of the day at which runs of zeros began on several recent days (a
  count that reads 0 at night);
- extreme: a reading beyond everything the device has read, by more than `extreme_tol`
  of that range (Numenta's detector on the benchmark calls this a spatial anomaly): a
  shift or a drift out of the series' whole history is found at once. A fixed, moderate
  z (`extreme_z`), since a long-lived device sets a new record now and then.

Context: an outlier against the recent level that the hour-of-day profile holds (this
hour ±1, on earlier days) is judged from the profile by the spike, shift and variance
statistics, so a daily on/off or a morning rush is learned, not alarmed every day.

Normalising each statistic by its own running second moment is what Numenta's anomaly
likelihood does for its raw scores (judge a score against the recent distribution of
scores); it absorbs autocorrelation and heavy tails per device instead of assuming
Gaussian noise. Every EWMA starts as a running mean (weight max(α, 1/n)), so estimates
are usable after a few readings and a new device is judged against its own first hours,
and each statistic is only scored after its own warm-up.

The score is z²/(z² + z0²) of the largest statistic z, in 0..1 (0.9 at z = 3·z0). The
point tests (vspike, spike) are divided by (readings per day / 24)^rate_power(_v) besides
their k: alarms are counted per device-day, tests are made per reading.

The statistics are computed on asinh(x / (0.1·m)), m the device's running mean |x|
(relative residuals: a sensor's noise grows with the level). The engine feeds the
detector with `feed`: one observation per device and minute bucket, at most `max_steps`
vectorized steps per call whatever arrived (docs/decisions.md, "Anomaly detection").
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from alert_rules.saved_state import checked, rows_of
from alert_rules.state import FloatArr, IntArr

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
TINY = 1e-300

# columns of one device's state: name → initial value (float64 unless listed in _INT)
_COLUMNS: dict[str, float] = {
    "seen": 0, "run": 0, "first_ms": -1, "last": np.nan, "score": 0.0,
    "level": 0.0, "scale": 0.0, "slow_scale": 0.0, "fast_scale": 0.0,
    "shift": 0.0, "shift_ms": 0.0, "var_ms": 0.0, "mid": 0.0, "slow": 0.0,
    "drift_ms": 0.0, "repeat": 0.0, "fast": 0.0, "day_ms": 0.0, "spike_ms": 0.0,
    "mag": 0.0, "al_short": 0.0, "al_mean": 0.0, "al_var": 0.0,
    "prev": np.nan, "vscale": 0.0, "vfast": 0.0, "out_run": 0.0, "dt": 0.0, "t_last": 0,
    "about_prev": 0.0, "zero_rate": 0.0, "own_fault": 0.0, "lo": np.nan, "hi": np.nan,
    "in_range": 0, "driver": -1, "zero_day": -1, "zero_today": 0,
}
_INT = ("seen", "run", "first_ms", "t_last", "in_range", "driver", "zero_day", "zero_today")
COMPONENTS = ("spike", "vspike", "shift", "variance", "drift", "daily", "stuck",
              "zeros", "extreme", "likelihood")


def statistic_name(index: int) -> str | None:
    """The name in COMPONENTS of a statistic's index as the detector keeps it (-1: none)."""
    return COMPONENTS[index] if 0 <= index < len(COMPONENTS) else None


def _ewma(old: FloatArr, new: FloatArr, alpha: float, seen: IntArr) -> FloatArr:
    """EWMA that starts as a running mean: weight max(α, 1/(n+1))."""
    w = np.maximum(alpha, 1.0 / (seen + 1.0))
    out: FloatArr = old + w * (new - old)
    return out


@dataclass
class Detector:
    z0: float = 2.0  # statistic (in its own running spreads) that scores 0.5
    clip: float = 3.0  # residuals beyond this many scales update the state only this far
    a_level: float = 0.1  # weights per reading
    a_scale: float = 0.02
    a_slow_scale: float = 0.002
    a_fast_scale: float = 0.2
    a_shift: float = 0.3
    a_mid: float = 0.05
    a_slow: float = 0.005
    a_moment: float = 0.005  # running second moments of the statistics
    a_fast: float = 0.3  # the level compared with the daily profile
    a_day: float = 0.1  # per visit of an hour-of-day bin (~10 days of memory)
    # context (docs/decisions.md, "A daily on/off is no anomaly"): a reading far from the
    # recent level that the hour-of-day profile (±1 h) holds, to within `context_share`
    # of that distance, is judged from the profile
    context: bool = True
    context_share: float = 0.25
    # the daily statistic is not judged where a bin beside this one holds the fast
    # level (to within context_share of its distance from this bin: a day a little
    # early or late), nor where the fast level is still catching up with a step (by
    # more than `day_settle` scales) to a reading that a bin beside holds (to within
    # `day_reading` of that distance)
    day_reading: float = 0.5
    day_settle: float = 2.0
    warmup: int = 12  # readings before spike and stuck are scored
    moment_warmup: int = 60  # readings before shift, variance and drift are scored
    day_warmup_ms: int = 3 * DAY_MS  # age before the daily profile is trusted
    stuck_surprise: float = 13.8  # −log p of a run that is certainly stuck (p = 1e-6)
    stuck_min_run: int = 4
    # a device whose runs of zeros start at fewer than 1 % of its readings is fully
    # surprised by one; above, by the square of −log rate over −log floor (5 %, a count
    # of about 3 a reading: z = 2.7 instead of 6)
    zero_rate_floor: float = 1e-2
    # nor by a 0 at an hour of the day (±1 h) at which runs of zeros began on several
    # recent days (a count that reaches 0 at night): per hour, the days with one, an
    # EWMA over days of weight `a_zero_day`; none of the surprise is left at a share of
    # `zero_days_full`, all of it below `zero_days_some` (one such day is not a habit);
    # 0 is off
    a_zero_day: float = 0.2
    zero_days_some: float = 0.3
    zero_days_full: float = 0.5
    floor_rel: float = 0.05  # smallest scale relative to the slow scale
    # and relative to the slow level: concentrations are on a ratio scale, and a sensor's
    # noise grows with the level (SDS011/PMS5003 datasheets: ±10–15 % of the reading)
    floor_level: float = 0.1
    transform: bool = True  # judge asinh(x / (offset · running mean |x|)), see update
    transform_offset: float = 0.1
    floor_log: float = 0.01  # smallest scale of the transformed series (1 %)
    # each statistic's z is divided by its k before the max: the k say how heavy each
    # statistic's tail is on clean real traces (bench/anomaly_eval.py), so that one
    # threshold means the same false-alarm rate for all of them
    k_spike: float = 3.0
    k_vspike: float = 0.55  # at hourly readings; raised with the reading rate (below)
    k_shift: float = 2.5
    k_variance: float = 1.0
    k_drift: float = 0.8
    k_daily: float = 1.5
    likelihood: bool = False  # the anomaly-likelihood layer (see update)
    k_likelihood: float = 0.75  # z of the recent mean: 4.5 scores as 6 (0.9)
    a_likelihood: float = 0.2  # the recent mean: about the last ten readings
    # the V is judged on sign(x)·|x|^v_power: on both real traces the reading-to-reading
    # change grows as about the square root of the level (docs/decisions.md), so there
    # it has one size at every level, and a V at 80 µg/m³ is not judged by the steps
    # of an episode at 400
    v_power: float = 0.5
    a_dscale: float = 0.01  # reading-to-reading change: ~100 readings of memory
    dscale_clip: float = 3.0  # a change beyond this many dscales teaches it only this much
    dscale_floor: float = 0.01  # smallest dscale relative to (running mean |x|)^v_power
    # the V's divisor is at least dscale_fast times the recent change (an EWMA of
    # a_dscale_fast, one reading behind, so that the V's own steps are not in it): in a
    # burst of large moves a V is ordinary
    a_dscale_fast: float = 0.2
    dscale_fast: float = 0.7
    # a step teaches the recent change at most this many dscales: a burst of large
    # moves raises it, a lone glitch (two huge steps) does not hide the next glitch
    dscale_fast_clip: float = 5.0
    # alarms are counted per device-day, tests are made per reading: a device reading
    # n times a day makes n/24 times the tests of an hourly one, so the point tests'
    # divisors grow as (n/24)^rate_power (a multiple-testing correction, read off the
    # tail of the statistic on the clean traces at two rates, docs/decisions.md; the V
    # on √x has a lighter tail than the raw V that 0.75 was read from)
    rate_power: float = 0.75  # the spike statistic
    rate_power_v: float = 0.65  # the vspike statistic
    a_dt: float = 0.05
    # extreme: beyond [lowest − tol·range, highest + tol·range] of the device's readings
    # (Numenta's 5 %), scored z = extreme_z: 4 is 0.8, under the anomaly rule's 0.9, so
    # a record alone reaches no grid worker (a device's first weeks set several: on the
    # Beijing trace at days 7, 17–18 and 44, then none in five years), while whoever
    # reads the score (a panel, `score --csv`) sees it above ordinary readings; 0 is off
    extreme_tol: float = 0.05
    extreme_z: float = 4.0
    adapt_run: int = 3  # readings in a row clipped on one side: the level jumps there
    bucket_ms: int = 60_000  # one observation per device and bucket (`feed`)
    max_steps: int = 8  # steps per `feed` call at most (a backlog is fed coarser)
    cols: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict, repr=False)
    profile: FloatArr = field(default_factory=lambda: np.zeros((0, 24)), repr=False)
    profile_n: IntArr = field(default_factory=lambda: np.zeros((0, 24), np.int64),
                              repr=False)
    zero_profile: FloatArr = field(default_factory=lambda: np.zeros((0, 24)), repr=False)
    parts: dict[str, FloatArr] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for k in _COLUMNS:
            self.cols.setdefault(k, np.zeros(0, np.int64 if k in _INT else np.float64))

    @property
    def score(self) -> FloatArr:
        return self.cols["score"]  # type: ignore[return-value]

    @property
    def about_previous(self) -> npt.NDArray[np.bool_]:
        """Per device: its score is about its previous reading (a spike is judged when
        the reading after it shows that it came back), not its newest."""
        out: npt.NDArray[np.bool_] = np.asarray(self.cols["about_prev"], np.float64) > 0
        return out

    @property
    def own_fault(self) -> npt.NDArray[np.bool_]:
        """Per device: its score is driven by a stuck run or an exact 0, the sensor's own
        doing, not the air's."""
        out: npt.NDArray[np.bool_] = np.asarray(self.cols["own_fault"], np.float64) > 0
        return out

    def statistic(self, rows: IntArr) -> list[str | None]:
        """Per device: the statistic that made its score (a name of COMPONENTS), None
        where the score is under 0.5."""
        driver = np.asarray(self.cols["driver"], np.int64)[rows]
        return [statistic_name(d) for d in driver.tolist()]

    @property
    def size(self) -> int:
        return int(self.cols["seen"].size)

    def fit(self, n: int) -> None:
        have = self.size
        if n <= have:
            return
        extra = max(n - have, have)
        for k, v in _COLUMNS.items():
            a = self.cols[k]
            self.cols[k] = np.r_[a, np.full(extra, v, a.dtype)]
        self.profile = np.vstack([self.profile, np.zeros((extra, 24))])
        self.profile_n = np.vstack([self.profile_n, np.zeros((extra, 24), np.int64)])
        self.zero_profile = np.vstack([self.zero_profile, np.zeros((extra, 24))])

    def update(self, rows: IntArr, x: FloatArr, ts: IntArr | None = None) -> FloatArr:
        """One reading for each of `rows` (distinct), at `ts` (epoch ms; None: no daily
        statistic); returns their scores (0 for NaN readings)."""
        ok = np.isfinite(x)
        out = np.zeros(ok.size)
        rows, x = rows[ok], x[ok]
        if rows.size == 0:
            return out
        t = None if ts is None else np.asarray(ts, np.int64)[ok]
        self.fit(int(rows.max()) + 1)
        # every device of the range in order (the live flow of a whole fleet): slices
        # instead of gathers and scatters of every column
        at: slice | IntArr = rows
        if rows[0] == 0 and rows[-1] == rows.size - 1 and bool((np.diff(rows) == 1).all()):
            at = slice(0, rows.size)
        c: dict[str, Any] = {k: v[at] for k, v in self.cols.items()}
        seen: IntArr = c["seen"]
        first = seen == 0
        raw = x
        mag = np.where(first, np.abs(raw), c["mag"])
        if self.transform:
            # asinh(x / (f·m)), m the device's running mean |x|: about log x above f·m,
            # linear near 0 and below; concentrations are on a ratio scale and a
            # sensor's noise grows with the level (SDS011/PMS5003: ±10–15 % of the
            # reading), so residuals here are relative and noise is about level-free
            off = self.transform_offset * mag
            with np.errstate(over="ignore"):  # a reading 1e300 times the running mean
                x = np.clip(np.arcsinh(raw / np.where(off > 0, off, 1.0)), -700.0, 700.0)
        # scale: robust residual scale, floored relative to its own slow version
        floor = (self.floor_log if self.transform else
                 self.floor_level * np.abs(c["slow"]))
        scale = np.maximum.reduce([c["scale"], self.floor_rel * c["slow_scale"],
                                   np.broadcast_to(floor, c["scale"].shape)])
        scale = np.where(scale > 0, scale, np.maximum(np.abs(c["level"]), 1.0) * 1e-9 + TINY)
        r = np.where(first, 0.0, x - c["level"])
        n1 = np.maximum(seen - 1, 0)
        # context: an outlier against the recent level that is what this device read at
        # this time of day (±1 h) on earlier days is judged from there (a daily on/off,
        # a morning rush) by the spike, shift and variance statistics; the level itself
        # still follows the reading. Outliers only (a few rows): the gathers are dear
        r_ctx = r
        if t is not None and self.context:
            far = np.flatnonzero(np.abs(r) > self.clip * scale)
            fm = c["first_ms"][far]
            far = far[(fm >= 0) & (t[far] - fm >= self.day_warmup_ms)]
            if far.size:
                near = self._profile_nearest(rows[far], (t[far] // HOUR_MS) % 24, x[far],
                                             (-1, 0, 1))
                # no nearer than an ordinary residual: a step the profile holds must
                # not look like the noise collapsing (NaN, no profile: not explained)
                gap = np.maximum(np.abs(x[far] - near), scale[far])
                r_ctx = r.copy()
                r_ctx[far] = np.where(gap < self.context_share * np.abs(r[far]),
                                      np.sign(r[far]) * gap, r[far])
        z_spike, spike_ms = self._moment(r_ctx / (1.2533 * scale), c["spike_ms"], n1)
        rc = np.clip(r, -self.clip * scale, self.clip * scale)
        # a clipped residual still counts fully once the scale is unknown (first readings)
        rc = np.where(seen < 3, r, rc)
        level = np.where(first, x, _ewma(c["level"], c["level"] + rc, self.a_level, seen))
        # fire once, then adapt: readings clipped on the same side `adapt_run` times in a
        # row are a new regime (an episode's start or end, a recalibrated sensor), not a
        # run of outliers; the level jumps to the reading instead of trailing it for
        # hours and scoring every reading of the new regime as a spike
        side = np.sign(r) * (np.abs(r) > self.clip * scale)
        out_run = np.where((side != 0) & (np.sign(c["out_run"]) == side),
                           c["out_run"] + side, side)
        regime = np.abs(out_run) >= self.adapt_run
        level = np.where(regime, x, level)
        out_run = np.where(regime, 0.0, out_run)
        ar = np.abs(rc)
        new_scale = np.where(first, 0.0, _ewma(c["scale"], ar, self.a_scale, n1))
        slow_scale = np.where(first, 0.0, _ewma(c["slow_scale"], ar, self.a_slow_scale, n1))
        # the fast scale sees residuals clipped much later: it is the one meant to grow
        big = np.minimum(np.abs(r_ctx), 4 * self.clip * scale)
        fast_scale = np.where(first, 0.0, _ewma(c["fast_scale"], big, self.a_fast_scale, n1))
        # shift: fast EWMA of the scaled residual, against its own running RMS
        u = np.clip(r_ctx / (1.2533 * scale), -3 * self.clip, 3 * self.clip)
        u = np.where(first, 0.0, u)
        shift = _ewma(c["shift"], u, self.a_shift, n1)
        z_shift, shift_ms = self._moment(shift, c["shift_ms"], n1)
        # variance: log of fast over slow scale
        lv = np.log((fast_scale + TINY) / (np.maximum(new_scale, scale) + TINY))
        lv = np.where(seen < 3, 0.0, np.clip(lv, -10.0, 10.0))
        z_var, var_ms = self._moment(lv, c["var_ms"], n1)
        # drift: medium level against slow level, in slow scales
        mid = np.where(first, x, _ewma(c["mid"], c["level"] + rc, self.a_mid, seen))
        slow = np.where(first, x, _ewma(c["slow"], c["level"] + rc, self.a_slow, seen))
        d = (mid - slow) / (1.2533 * np.maximum(slow_scale, scale) + TINY)
        z_drift, drift_ms = self._moment(d, c["drift_ms"], n1)
        warm = seen >= self.moment_warmup
        z_shift, z_var = (np.where(warm, z, 0.0) for z in (z_shift, z_var))
        # the slow level is a running mean for its first 1/α readings: drift is only
        # measured against it once it has become a slow level
        z_drift = np.where(seen >= 2 / self.a_slow, z_drift, 0.0)
        # vspike: the previous reading against both of its neighbours, on g(x) =
        # sign(x)·|x|^v_power over the device's running reading-to-reading change of g
        # (vscale). A glitch or a puff at the inlet is one reading that comes back; the
        # air itself rarely makes a V: an episode rises and stays, a front clears and
        # stays. Judged one reading late, when the reading after it is known, which is
        # what tells the two apart. g is homogeneous (g(c·x) = c^p·g(x)), so the ratio
        # is scale-free.
        gp, gl = self._power(c["prev"]), self._power(c["last"])
        g = self._power(raw)
        v = np.maximum(np.minimum(gl - gp, gl - g), np.minimum(gp - gl, g - gl))
        vfloor = self.dscale_floor * self._power(mag)
        vscale = np.maximum(c["vscale"], vfloor)
        # vfast holds the recent change up to the step into the previous reading: the
        # V's own two steps are not in the divisor that judges it
        vdiv = np.maximum(vscale, self.dscale_fast * c["vfast"])
        z_v = np.where(np.isfinite(v) & (vdiv > 0) & (seen >= self.warmup),
                       v / (1.2533 * vdiv + TINY), 0.0)
        z_v = np.maximum(z_v, 0.0)
        step = np.abs(g - gl)
        step = np.where(np.isfinite(step), step, 0.0)
        step = np.where(c["vscale"] > 0, np.minimum(step, self.dscale_clip * vscale), step)
        new_vscale = np.where(seen >= 1, _ewma(c["vscale"], step, self.a_dscale,
                                               np.maximum(seen - 1, 0)), 0.0)
        into_last = np.minimum(np.abs(gl - gp), self.dscale_fast_clip * vscale)
        new_vfast = np.where(np.isfinite(into_last),  # from the third reading on
                             _ewma(c["vfast"], into_last, self.a_dscale_fast,
                                   np.maximum(seen - 2, 0)), c["vfast"])
        # stuck: run of identical readings against the device's own repeat rate
        same = raw == c["last"]
        run = np.where(same, c["run"] + 1, 1)
        repeat = np.where(first, 0.0, _ewma(c["repeat"], same.astype(np.float64),
                                            self.a_slow_scale * 5, n1))
        # a run being scored is not yet evidence of how often this device repeats
        surprise = -np.log(np.clip(repeat, 0.02, 0.98)) * (run - 1)
        z_stuck = np.where((run >= self.stuck_min_run) & (seen >= self.warmup),
                           3 * self.z0 * surprise / self.stuck_surprise, 0.0)
        z_spike = np.where(seen >= self.warmup, z_spike, 0.0)
        # an exact zero from a device whose level is well clear of zero: PM sensors read
        # 0 in clean air only, so this is a dead laser or lost frames (0 in any unit).
        # Judged against the device's own rate of runs of zeros, as a stuck run is
        # against its rate of repeats: a count that is often 0 is not surprised by one
        # more (runs, not readings: a dead laser's long run must not teach it)
        zero = raw == 0
        zero_start = (zero & (c["last"] != 0)).astype(np.float64)
        zero_rate = np.where(first, zero_start,
                             _ewma(c["zero_rate"], zero_start, self.a_slow_scale * 5, n1))
        zero_surprise = np.minimum(-np.log(np.maximum(c["zero_rate"], self.zero_rate_floor))
                                   / -np.log(self.zero_rate_floor), 1.0) ** 2
        zero_day, zero_today = c["zero_day"], c["zero_today"]
        if t is not None and self.a_zero_day > 0:
            zero_surprise, zero_day, zero_today = self._zero_hours(
                rows, t, zero, zero_start > 0, zero_surprise, zero_day, zero_today,
                c["first_ms"])
        z_zero = np.where(zero & (np.abs(c["level"]) > 3 * scale) & (seen >= self.warmup),
                          3 * self.z0 * zero_surprise, 0.0)
        # daily: fast level against the hour-of-day profile
        fast = np.where(first, x, _ewma(c["fast"], x, self.a_fast, seen))
        z_day = np.zeros(rows.size)
        day_ms = c["day_ms"]
        first_ms = c["first_ms"]
        if t is not None:
            first_ms = np.where(first_ms < 0, t, first_ms)
            h = (t // HOUR_MS) % 24
            prof, pn = self.profile[rows, h], self.profile_n[rows, h]
            dd = np.where(pn > 0, (fast - prof) / (1.2533 * np.maximum(slow_scale, scale) + TINY),
                          0.0)
            z_day, day_ms = self._moment(dd, c["day_ms"], n1)
            z_day = np.where((t - first_ms >= self.day_warmup_ms) & (pn >= 3), z_day, 0.0)
            # not a broken day where a bin beside this one holds the fast level (a day a
            # little early or late), nor where the fast level is still catching up with
            # a step to a reading that a bin beside holds (the daily on/off switched):
            # only for the few rows that could alert (a score of 0.5 or more)
            odd = np.flatnonzero(z_day > 2 * self.k_daily)
            if odd.size:
                fo, xo = fast[odd], x[odd]
                gap = np.abs(fo - prof[odd])
                beside = self._profile_nearest(rows[odd], h[odd], fo, (-1, 1))
                reading = self._profile_nearest(rows[odd], h[odd], xo, (-1, 1))
                settling = np.abs(xo - fo) > self.day_settle * 1.2533 * np.maximum(
                    slow_scale[odd], scale[odd])
                early = np.abs(fo - beside) < self.context_share * gap
                switched = (np.abs(xo - reading) < self.day_reading * gap) & settling
                z_day[odd] = np.where(early | switched, 0.0, z_day[odd])
            # the profile holds the readings themselves, so that a reading the hour
            # holds is matched exactly (the fast level lags a step by a few readings)
            self.profile[rows, h] = np.where(pn > 0, prof + self.a_day * (x - prof), x)
            self.profile_n[rows, h] = pn + 1
        # readings per day, from the device's running reading interval
        dt = c["dt"]
        if t is not None:
            gap = np.where(first | ~np.isfinite(c["last"]), 0.0,
                           np.minimum(t - c["t_last"], DAY_MS).astype(np.float64))
            dt = np.where(gap > 0, np.where(dt > 0, dt + self.a_dt * (gap - dt), gap), dt)
        per_day = np.where(dt > 0, DAY_MS / np.maximum(dt, 1.0), 24.0)
        tests = np.maximum(per_day / 24.0, 1.0)
        rate, rate_v = tests ** self.rate_power, tests ** self.rate_power_v
        # extreme: beyond the range of everything read so far, by tol of that range
        lo, hi = c["lo"], c["hi"]
        z_ext = np.zeros(rows.size)
        if self.extreme_tol > 0:
            tol = self.extreme_tol * (hi - lo)
            with np.errstate(invalid="ignore"):  # NaN: no range yet
                beyond = (tol > 0) & ((raw > hi + tol) | (raw < lo - tol))
            # judged once the range holds as many readings as shift and variance need
            # (its own count: a state saved before the range was kept starts it afresh)
            z_ext = np.where(beyond & (c["in_range"] >= self.moment_warmup), self.extreme_z, 0.0)
        # each statistic over its divisor, in the order of COMPONENTS
        judged = [z_spike / (self.k_spike * rate), z_v / (self.k_vspike * rate_v),
                  z_shift / self.k_shift, z_var / self.k_variance, z_drift / self.k_drift,
                  z_day / self.k_daily, z_stuck, z_zero, z_ext]
        z = np.maximum.reduce(judged)
        # anomaly likelihood (Ahmad et al. 2017): the recent mean of the combined
        # statistic against its own long-run mean and spread, so a run of moderately
        # odd readings (a shift, a noisier sensor) counts though none is odd alone;
        # the long-run moments learn from samples clipped at 3 spreads above the mean.
        # Off by default: measured, it adds more false alarms than detections here
        # (docs/decisions.md), since each statistic is already judged against its own
        # running spread
        al_short, al_mean, al_var = c["al_short"], c["al_mean"], c["al_var"]
        z_al = np.zeros(rows.size)
        if self.likelihood:
            al_short = _ewma(al_short, z, self.a_likelihood, n1)
            sd = np.sqrt(al_var)
            z_al = np.where((seen >= self.moment_warmup) & (al_var > 0),
                            (al_short - al_mean) / (sd + TINY), 0.0)
            zc = np.where(al_var > 0, np.minimum(z, al_mean + 3 * sd), z)
            al_mean, al_var = (_ewma(al_mean, zc, self.a_moment, n1),
                               _ewma(al_var, (zc - al_mean) ** 2, self.a_moment, n1))
            judged.append(z_al / self.k_likelihood)
            z = np.maximum(z, judged[-1])
        # beyond 1e100 spreads the score is 1 anyway, and z² would overflow to inf / inf
        # (a reading of 5e-324 after a run of zeros, then 1: a V far beyond any floor)
        zs = np.minimum(z, 1e100)
        score = zs * zs / (zs * zs + self.z0 * self.z0)
        # 1 where the score is about the previous reading (vspike decided it): whoever
        # checks the reading against its neighbours must look at that reading
        about_prev = (z_v / (self.k_vspike * rate_v) >= z).astype(np.float64) * (z > 0)
        # 1 where the score is the sensor's own doing: a stuck run or an exact 0 (no air
        # repeats a reading for far longer than the device does, nor reads 0 well above
        # its level), whatever the neighbours read
        own_fault = (np.maximum(z_stuck, z_zero) >= z).astype(np.float64) * (z > 0)
        # which statistic made the score (index into COMPONENTS), for the alert's text;
        # only where the score is 0.5 or more (a few rows), -1 elsewhere
        driver = np.full(rows.size, -1, np.int64)
        top = np.flatnonzero(z >= self.z0)
        if top.size:
            driver[top] = np.argmax(np.vstack([a[top] for a in judged]), axis=0)
        self.parts = {"spike": z_spike, "vspike": z_v, "shift": z_shift, "variance": z_var,
                      "drift": z_drift, "daily": z_day, "stuck": z_stuck,
                      "zeros": z_zero, "extreme": z_ext, "likelihood": z_al}
        new = {"seen": seen + 1, "run": run, "first_ms": first_ms, "last": raw,
               # an outlier must not move the transform itself (the next normal
               # readings would then look odd): clipped at twice the magnitude
               "mag": _ewma(mag, np.where(first, np.abs(raw), np.minimum(np.abs(raw), 2 * mag)),
                            self.a_slow, seen),
               "score": score, "level": level, "scale": new_scale,
               "slow_scale": slow_scale, "fast_scale": fast_scale, "shift": shift,
               "shift_ms": shift_ms, "var_ms": var_ms, "mid": mid, "slow": slow,
               "drift_ms": drift_ms, "repeat": repeat, "fast": fast, "day_ms": day_ms,
               "spike_ms": spike_ms, "al_short": al_short, "al_mean": al_mean,
               "al_var": al_var, "vscale": new_vscale, "vfast": new_vfast,
               "out_run": out_run, "dt": dt,
               # a copy: `last` may be a view of the column written just before
               "prev": np.array(c["last"], copy=True), "t_last": c["t_last"] if t is None else t,
               "about_prev": about_prev, "zero_rate": zero_rate, "own_fault": own_fault,
               "lo": np.fmin(lo, raw), "hi": np.fmax(hi, raw), "in_range": c["in_range"] + 1,
               "driver": driver, "zero_day": zero_day, "zero_today": zero_today}
        for k, v in new.items():
            self.cols[k][at] = v
        out[ok] = score
        return out

    def _zero_hours(self, rows: IntArr, t: IntArr, zero: npt.NDArray[np.bool_],
                    start: npt.NDArray[np.bool_], surprise: FloatArr, zero_day: IntArr,
                    zero_today: IntArr, first_ms: IntArr
                    ) -> tuple[FloatArr, IntArr, IntArr]:
        """The zeros' surprise where runs of zeros began at this hour of the day (±1 h) on
        several recent days, and the hours' day shares updated with this reading's start
        of a run. Rows reading 0 only (a few): each day's share is decayed when the
        device next reads 0, and a day counts once per hour (`zero_today`, a bit per
        hour of the device's current day)."""
        z = np.flatnonzero(zero)
        if z.size == 0:
            return surprise, zero_day, zero_today
        surprise, zero_day, zero_today = surprise.copy(), zero_day.copy(), zero_today.copy()
        rz, d, h = rows[z], t[z] // DAY_MS, (t[z] // HOUR_MS) % 24
        passed = np.where(zero_day[z] >= 0, d - zero_day[z], 0)
        shares = self.zero_profile[rz] * ((1 - self.a_zero_day) ** np.maximum(passed, 0))[:, None]
        today = np.where(passed != 0, 0, zero_today[z])
        near = np.maximum.reduce([shares[np.arange(z.size), (h + dh) % 24] for dh in (-1, 0, 1)])
        span = self.zero_days_full - self.zero_days_some
        surprise[z] *= np.clip((self.zero_days_full - near) / span, 0.0, 1.0)
        bit = np.left_shift(np.int64(1), h)
        first = start[z] & ((today & bit) == 0)  # the first run of this hour today
        # a young device's days weigh as a running mean would, with two days without
        # zeros before its first (a 0 at the same hour on its first two days is not
        # yet a habit; on its first three it is, partly)
        fz = first_ms[z]
        age = np.where(fz >= 0, np.maximum(t[z] - fz, 0), 0)  # 0 before its first reading
        w = np.maximum(self.a_zero_day, 1.0 / (age // DAY_MS + 3.0))
        shares[np.arange(z.size), h] += np.where(first, w, 0.0)
        self.zero_profile[rz] = shares
        zero_day[z], zero_today[z] = d, today | np.where(start[z], bit, 0)
        return surprise, zero_day, zero_today

    def _profile_nearest(self, rows: IntArr, h: IntArr, v: FloatArr, shifts: tuple[int, ...]
                         ) -> FloatArr:
        """The value nearest to v among these rows' hour-of-day bins h + shifts that have
        been visited at least 3 times (NaN where none has)."""
        near = np.full(rows.size, np.nan)
        gap = np.full(rows.size, np.inf)
        for dh in shifts:
            hh = (h + dh) % 24
            pv = self.profile[rows, hh]
            d = np.abs(v - pv)
            closer = (self.profile_n[rows, hh] >= 3) & (d < gap)
            near = np.where(closer, pv, near)
            gap = np.where(closer, d, gap)
        return near

    def _power(self, x: FloatArr) -> FloatArr:
        """sign(x)·|x|^v_power (NaN stays NaN): the series the V is judged on."""
        if self.v_power == 1.0:
            return x
        a = np.abs(x)
        out: FloatArr = np.copysign(np.sqrt(a) if self.v_power == 0.5 else a ** self.v_power, x)
        return out

    def _moment(self, s: FloatArr, ms: npt.NDArray[np.generic], seen: IntArr
                ) -> tuple[FloatArr, FloatArr]:
        """|s| over its own running RMS (before this reading), and the updated mean
        square (each sample clipped at clip² times it, so an anomaly does not teach the
        detector that anomalies are normal)."""
        m = np.asarray(ms, np.float64)
        z = np.abs(s) / np.sqrt(m + TINY)
        z = np.where(m > 0, z, 0.0)
        s2 = s * s
        s2 = np.where(m > 0, np.minimum(s2, self.clip * self.clip * m), s2)
        return z, _ewma(m, s2, self.a_moment, seen)

    def feed(self, rows: IntArr, x: FloatArr, ts: IntArr) -> None:
        """Readings in any order, several per device allowed: the readings of one device
        in one `bucket_ms` bucket are one observation (their mean, at the newest one's
        time), and the buckets of a device are fed oldest first, one vectorized step per
        rank. A device's readings spanning more than `max_steps` buckets (a backlog) are
        fed in buckets widened to fit, so one call costs at most about `max_steps`
        steps whatever arrived. Each device's score is the highest of its steps."""
        ok = np.isfinite(x)
        if not ok.all():
            rows, x, ts = rows[ok], x[ok], ts[ok]
        if rows.size == 0:
            return
        self.fit(int(rows.max()) + 1)
        if rows.size == 1 or int(np.bincount(rows).max()) == 1:
            self.update(rows, x, ts)  # live flow: one reading per device, one step
            return
        order = np.lexsort((ts, rows))
        rows, x, ts = rows[order], x[order], ts[order]
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        ends = np.r_[starts[1:], rows.size]
        span = ts[ends - 1] // self.bucket_ms - ts[starts] // self.bucket_ms + 1
        width = np.repeat(self.bucket_ms * -(-span // self.max_steps), ends - starts)
        b = ts // width
        g = np.flatnonzero(np.r_[True, (rows[1:] != rows[:-1]) | (b[1:] != b[:-1])])
        g_end = np.r_[g[1:], rows.size]
        mean = np.add.reduceat(x, g) / (g_end - g)
        g_rows, g_ts = rows[g], ts[g_end - 1]
        g_first = np.flatnonzero(np.r_[True, g_rows[1:] != g_rows[:-1]])
        rank = np.arange(g.size) - np.repeat(g_first, np.diff(np.r_[g_first, g.size]))
        devices = g_rows[g_first]
        peak = np.zeros(devices.size)
        driver = np.full(devices.size, -1, np.int64)  # the statistic of the peak
        where = np.searchsorted(devices, g_rows)
        for k in range(int(rank.max()) + 1):
            sel = rank == k
            s = self.update(g_rows[sel], mean[sel], g_ts[sel])
            at = where[sel]  # distinct within a rank
            higher = s > peak[at]
            driver[at[higher]] = self.cols["driver"][g_rows[sel][higher]]
            peak[at] = np.maximum(peak[at], s)
        self.cols["score"][devices] = peak
        self.cols["driver"][devices] = driver

    def blank(self) -> Detector:
        """The same parameters, no devices."""
        params = {f.name: getattr(self, f.name) for f in fields(self)
                  if f.name not in ("cols", "profile", "profile_n", "zero_profile", "parts")}
        return Detector(**params)

    def clear(self, rows: IntArr) -> None:
        """Forget these devices: their next reading starts a new baseline."""
        rows = rows[rows < self.size]
        for k, v in _COLUMNS.items():
            self.cols[k][rows] = v
        self.profile[rows] = 0.0
        self.profile_n[rows] = 0
        self.zero_profile[rows] = 0.0

    def copy_from(self, rows: IntArr, src: Detector, src_rows: IntArr) -> None:
        if rows.size == 0:
            return
        self.fit(int(rows.max()) + 1)
        src.fit(int(src_rows.max()) + 1)
        for k in _COLUMNS:
            self.cols[k][rows] = src.cols[k][src_rows]
        self.profile[rows] = src.profile[src_rows]
        self.profile_n[rows] = src.profile_n[src_rows]
        self.zero_profile[rows] = src.zero_profile[src_rows]

    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return {**self.cols, "profile": self.profile, "profile_n": self.profile_n,
                "zero_profile": self.zero_profile}

    def load(self, a: dict[str, npt.NDArray[np.generic]]) -> None:
        if "profile" not in a:  # state saved by an older detector: start afresh
            self.cols = {}
            self.__post_init__()
            self.profile = np.zeros((0, 24))
            self.profile_n = np.zeros((0, 24), np.int64)
            self.zero_profile = np.zeros((0, 24))
            return
        n = rows_of(a, "profile", 2, "the anomaly detector")
        checked(a, "profile", (n, 24), np.float64)
        checked(a, "profile_n", (n, 24), np.int64)
        for k, v in _COLUMNS.items():
            dt = np.int64 if k in _INT else np.float64
            # a column saved by an older detector is missing: it starts afresh
            self.cols[k] = (checked(a, k, (n,), dt).astype(dt) if k in a
                            else np.full(n, v, dt))
        self.profile = a["profile"].astype(np.float64)
        self.profile_n = a["profile_n"].astype(np.int64)
        # saved before the hours' zeros were kept: none yet
        self.zero_profile = (checked(a, "zero_profile", (n, 24), np.float64).astype(np.float64)
                             if "zero_profile" in a else np.zeros((n, 24)))
        if "vscale" not in a and "dscale" in a and a["dscale"].shape == (n,):
            # saved when the V was judged on the raw series: its reading-to-reading
            # change carried over to g(x) to first order (g' at the running mean |x|),
            # rather than a zero divisor that alarms until relearned
            mag = np.asarray(self.cols["mag"], np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                slope = self.v_power * np.where(mag > 0, mag, 1.0) ** (self.v_power - 1.0)
            carried = np.nan_to_num(a["dscale"].astype(np.float64) * slope)
            self.cols["vscale"] = carried
            self.cols["vfast"] = carried.copy()
