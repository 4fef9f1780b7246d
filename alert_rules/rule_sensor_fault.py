"""Sensor fault: a device that its neighbours contradict, one rule per cause.

Pollution reaches every sensor of a neighbourhood; a fault reaches one. So each cause
compares the device with the median of its neighbours (`alert_rules.neighbours`, the
layout the spatial rule caches):

- `stuck`: the device's readings have not changed over the window while its neighbours'
  have;
- `zero`: the device reads exactly 0 while its neighbours read at least
  `min_neighbour_level`;
- `jump`: the device's newest reading moved by more than `ratio`× against the previous
  one while the neighbours' median did not move (by at most a fifth of its level or a
  tenth of the device's step: no plume rises that fast in one place);
- `drift`: the device's window mean stays outside [median / ratio, median × ratio] of its
  neighbours (`for` says for how long: hours, a fouled or ageing sensor); each judging
  re-judges the next `drift_stride`-th of the fleet (rows ≡ turn mod stride, the turn
  counted per judging, not read off the clock: every row in turn whatever the
  readings' cadence and the ticks' times), since it is the only cause that needs every
  device's neighbour median;
- `shift`: a level shift against the neighbours (a calibration jump, a re-seated or
  swapped sensor): the device's ratio to its neighbours' median stays `ratio`× away from
  its usual ratio for `persist` readings, while no neighbour moved the same way by half
  as much, in log and in µg/m³ (a plume seen by the device and its nearest neighbour is
  pollution, not a fault; clean air's noise at 1 µg/m³ is no plume). The usual
  ratio (`UsualRatio`) is a slow robust EWMA of the device's log-ratio (time constant
  `usual_tau_ms`, hours), updated at most every `usual_every_ms` per device, frozen
  while a step is followed or the alert fires, and never learning a ratio already
  `ratio`× from it (a fault or a plume in clean air would teach it the fault); until it
  has `usual_after` updates the ratio just before the step stands in for it. A shift is
  followed from a candidate: a step of `step_ratio`× against the device's previous
  reading (found without its neighbours), or, at an update of the usual ratio, a ratio
  already `ratio`× away from the usual one (a shift whose step was missed). A ratio of
  ratios: the device's own gain cancels, so a sensor that always reads 1.4× its
  neighbours is not a fault and one that suddenly reads 60 % higher is, at any
  concentration and in any unit; and a device that steps back to its usual ratio after a
  missed fault is not a new one. Below `min_excess` (clean air) a step, a departure and a
  reading beyond the ratio count when they are `noise_k`× beyond the ratio's own noise:
  the largest of the device's running log spread and recent noise (kept with the usual
  ratio) and its neighbours' disagreement at that reading;
- `humidity`: the device reads more than `ratio`× its neighbours while its own RH is at
  least `humidity_above` % (low-cost optical sensors count droplets as particles: Jayaratne
  et al. 2018, AMT 11, 4883; the wire's `high_humidity` flag uses the same physics), and
  no neighbour in the same humid air shares the excursion (a plume over the device and a
  neighbour is pollution, as for `shift`).

Each cause is its own rule, so a device has at most one open alert per cause. The
neighbour median is only computed for the devices the cause picks out (a few), so the
rule costs a few whole-fleet array operations per tick. Evidence for the technician
(neighbour median, how long) goes into the annotation templates as {neighbour_median}
and {duration_min}.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from alert_rules.neighbour_layout import neighbour_layout
from alert_rules.neighbours import row_median
from alert_rules.rule_base import RuleBase
from alert_rules.saved_state import checked, column, one_length, rows_of
from alert_rules.state import FleetState, FloatArr, IntArr
from alert_rules.transitions import Transition

#: humidity: how far below `humidity_above` a neighbour's RH may be and still count as
#: the same humid air: twice a low-cost RH sensor's stated accuracy (Bosch BME280
#: datasheet ±3 %RH; Sensirion SHT3x ±2 %RH)
HUMID_TOLERANCE_PCT = 6.0
CAUSES = ("stuck", "zero", "jump", "shift", "drift", "humidity")
#: shift: the weight of each update in a device's recent noise (`UsualRatio.noise`): about
#: the last four updates (two hours at one each 30 minutes), to follow the air's level
NOISE_WEIGHT = 0.25
#: causes judged on a device's own newest readings, row by row (`RuleBase.judges_rows`)
ROW_CAUSES = ("zero", "jump", "shift")


@dataclass(kw_only=True)
class SensorFaultRule(RuleBase):
    cause: str = "stuck"
    field: str = "pm2_5"
    humidity_field: str = "humidity_pct"
    window_ms: int = 1_200_000
    radius_km: float = 3.0
    max_neighbours: int = 8
    min_neighbours: int = 2
    ratio: float = 2.0
    min_neighbour_level: float = 5.0  # µg/m³: neighbours clearly above a sensor's zero
    humidity_above: float = 85.0  # % RH
    min_readings: int = 5
    drift_stride: int = 10
    #: drift: judgings so far; rows ≡ drift_turn (mod drift_stride) are re-judged next
    drift_turn: int = 0
    persist: int = 2  # shift: readings beyond `ratio` before it fires
    #: shift: the device's own step (newest / previous reading) that makes it a candidate;
    #: below `ratio`, since the air may move the other way in the same interval
    step_ratio: float = 1.3
    #: shift: and the device this far (µg/m³) from where its neighbours put it, and its
    #: step this large: below it a low-cost sensor's own noise makes ratios meaningless
    min_excess: float = 5.0
    #: shift: or, once its usual ratio is known, its log-ratio this many times its noise
    #: from the usual one: the larger of its own running spread (`UsualRatio.spread`)
    #: and its neighbours' disagreement at this reading (the root mean square of their
    #: log distances from where they usually read); scale-free, for clean air where
    #: `min_excess` is more than the whole step
    noise_k: float = 5.0
    #: shift: time constant of the usual log-ratio's EWMA (ms; 0: no usual ratio, the
    #: ratio just before each step is the reference)
    usual_tau_ms: int = 12 * 3_600_000
    #: shift: one update of a device's usual ratio at most this often (the neighbour
    #: median it needs is read for those devices only: a thirtieth of the readings at
    #: one a minute)
    usual_every_ms: int = 1_800_000
    #: shift: updates before the usual ratio is trusted
    usual_after: int = 6
    #: shift: the number of due updates over which a device's mean distance from its
    #: usual ratio (`UsualRatio.bias`, each clipped at `ratio`×) is kept, while that ratio
    #: rests on fewer than this many updates; once the mean is half of `ratio` (log)
    #: away, the usual ratio is learned afresh. One learned through a fault in the
    #: device's first hours (a drift, a plume) is never near the device again and was
    #: never unlearned: every later step was judged against it. One learned over days is
    #: trusted (a long local plume must not unteach it). 0: never
    usual_doubt: int = 24
    #: shift: time constant of a second, slow EWMA of the same log-ratio (`UsualRatio.anchor`,
    #: ms; 0: none), learned at the same updates. A slow drift teaches the usual ratio
    #: (12 h) step by step, each step within `ratio`×, so it is never a departure from
    #: it; a device `ratio`× from its anchor is. Consulted once the usual ratio is past
    #: its doubt (`usual_doubt` updates), and learned afresh with it: a young usual ratio
    #: and an anchor that disagree would each let go the other's step
    anchor_tau_ms: int = 7 * 24 * 3_600_000
    last_over: npt.NDArray[np.bool_] = dataclasses.field(
        default_factory=lambda: np.zeros(0, bool), repr=False)
    onset_ms: IntArr = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    #: rows whose newest readings made them a candidate at their last judging (zero, jump;
    #: shift: a step being followed)
    cand: npt.NDArray[np.bool_] = dataclasses.field(
        default_factory=lambda: np.zeros(0, bool), repr=False)
    #: shift, per row: ShiftTrack (the device's and its neighbours' levels before its step)
    track: ShiftTrack = dataclasses.field(default_factory=lambda: ShiftTrack(), repr=False)
    #: shift, per row: the device's usual log-ratio to its neighbours' median
    usual: UsualRatio = dataclasses.field(default_factory=lambda: UsualRatio(), repr=False)

    kind = "sensor_fault"

    def fields(self) -> tuple[str, ...]:
        return (self.field, self.humidity_field) if self.cause == "humidity" else (self.field,)

    def fine_windows_ms(self) -> tuple[int, ...]:
        return (self.window_ms,)

    def extremes(self) -> tuple[str, ...]:
        return (self.field,) if self.cause == "stuck" else ()

    def _neighbours(self, fleet: FleetState) -> IntArr:
        """Neighbour rows as a (devices × k) matrix, -1 for none: the spatial rules'
        layout (one per radius and k, shared), turned once per fleet size."""
        key = f"spatial-rows:{self.radius_km}:{self.max_neighbours}"
        n = fleet.size
        nbr_t = neighbour_layout(fleet, self.radius_km, self.max_neighbours)[0]
        hit = fleet.layout.get(key)
        if hit is not None and hit[1] is nbr_t:
            cached: IntArr = hit[0]
            return cached
        nbr = np.ascontiguousarray(np.where(nbr_t < n, nbr_t, -1).T)
        fleet.layout[key] = (nbr, nbr_t)
        return nbr

    def _around(self, nbr: IntArr, rows: IntArr, per_device: FloatArr
                ) -> tuple[FloatArr, npt.NDArray[np.bool_]]:
        """(neighbour median, enough neighbours) of the given rows."""
        padded = np.r_[per_device, np.nan]
        around = padded[nbr[rows]]
        return row_median(around), (~np.isnan(around)).sum(axis=1) >= self.min_neighbours

    def judges_rows(self) -> bool:
        """Zero and jump read a device's own newest readings: judged on arrival, their
        candidates (`hot_rows`) every tick; the windowed causes are judged whole."""
        return self.cause in ROW_CAUSES

    def windowed(self) -> bool:
        return self.cause not in ROW_CAUSES and super().windowed()

    def hot_rows(self, fleet: FleetState, now_ms: int) -> IntArr:
        """Candidates (a zero, a jump) at their last judging: their verdict rests on
        their neighbours' readings, which may move at any tick. A shift is judged at the
        device's own readings only."""
        if self.cause == "shift":
            return np.zeros(0, np.int64)
        n = min(fleet.size, self.cand.size)
        return np.flatnonzero(self.cand[:n])

    def judge(self, fleet: FleetState, now_ms: int, rows: IntArr | None) -> list[Transition]:
        if self.cause not in ROW_CAUSES:
            return self._judge_fleet(fleet, now_ms)
        if self.cause == "shift":
            return self._judge_shift(fleet, now_ms, rows)
        n = fleet.size
        f = self.field
        nbr = self._neighbours(fleet)  # built on the first tick, not at the first fault
        sel = slice(0, n) if rows is None else rows
        latest = fleet.latest(f, now_ms, self.window_ms, rows)
        with np.errstate(invalid="ignore"):
            if self.cause == "zero":
                cand = latest == 0
            else:
                prev = fleet.prev_v[f][sel]
                step = np.abs(latest - prev)
                cand = (step > (self.ratio - 1) * np.maximum(np.minimum(latest, prev), 0)) \
                    & (step > self.min_neighbour_level)
        if self.cand.size < n:
            self.cand = np.r_[self.cand, np.zeros(n - self.cand.size, bool)]
        self.cand[sel] = cand
        local = np.flatnonzero(cand)
        picked = local if rows is None else rows[local]
        over = np.zeros(cand.size, bool)
        med = np.zeros(0)
        if local.size:
            around = nbr[picked]  # (candidates × k), -1: none
            now_v = self._latest_at(fleet, around, now_ms)
            med, enough = self._median_of(around, now_v)
            x = latest[local]
            with np.errstate(invalid="ignore", divide="ignore"):
                if self.cause == "zero":
                    bad = med >= self.min_neighbour_level
                else:
                    before = self._prev_at(fleet, around)
                    med_prev, _ = self._median_of(around, before)
                    # still: moved by at most a fifth of their level, or a tenth of the
                    # device's own step (clean air's noise moves a median of 2 µg/m³
                    # by more than a fifth; a regional rise moves it with the device)
                    still = np.abs(med - med_prev) <= np.maximum(
                        0.2 * np.maximum(med_prev, 1e-9), 0.1 * step[local])
                    # and no neighbour stepped the same way by half as much: a plume
                    # over the device and its nearest neighbour, which the median of
                    # the others does not show, is pollution (in µg/m³, not in log: at
                    # 1 µg/m³ a sensor's noise moves its log by more than any jump)
                    sign = np.where(x > prev[local], 1.0, -1.0)
                    theirs = (now_v - before) * sign[:, None]
                    shared = (theirs >= step[local][:, None] / 2).any(axis=1)
                    bad = still & ~shared & ((x > self.ratio * med) | (x < med / self.ratio))
            over[local] = enough & bad
        self._onset(over, now_ms, n, rows)
        # evidence is rendered only for the few subjects that change state (context())
        self.evidence = {"now": now_ms, "median": dict(zip(picked.tolist(), med.tolist(),
                                                           strict=True)),
                         "index": fleet.index}
        return self.step(fleet, latest, over, ~over, now_ms, rows)

    def _judge_shift(self, fleet: FleetState, now_ms: int, rows: IntArr | None
                     ) -> list[Transition]:
        """A step of the device alone that stays. Judged at the device's own readings only
        (a row judged without a new one keeps its verdict): candidates are found on its
        two newest readings (a few array operations over the judged rows); only they and
        the steps being followed (`cand`, a few) read their neighbours."""
        n = fleet.size
        f = self.field
        nbr = self._neighbours(fleet)
        tr = self.track
        tr.fit(n, nbr.shape[1])
        if self.cand.size < n:
            self.cand = np.r_[self.cand, np.zeros(n - self.cand.size, bool)]
        if self.last_over.size < n:
            self.last_over = np.r_[self.last_over, np.zeros(n - self.last_over.size, bool)]
        self.columns.fit(n)
        sel = slice(0, n) if rows is None else rows
        latest = fleet.latest(f, now_ms, self.window_ms, rows)
        ts = fleet.latest_ts[f][sel]
        new = ts != tr.seen_ts[sel]  # a reading this rule has not counted yet
        tracked = self.cand[sel].copy()
        prev = fleet.prev_v[f][sel]
        over = self.last_over[sel] & ~new  # no new reading: the verdict stands
        # the steps being followed first: one that ends here (the device came back, or
        # swung the other way) lets this reading start a new one
        back = np.zeros(tracked.size, bool)
        picked, med = self._follow(fleet, now_ms, np.flatnonzero(tracked & new), rows,
                                   latest, nbr, tracked, over, back)
        with np.errstate(invalid="ignore"):
            start = new & ~tracked & ~back & (latest > 0) & (prev > 0) \
                & ((latest >= self.step_ratio * prev) | (prev >= self.step_ratio * latest))
            big = np.abs(latest - prev) >= self.min_excess
        quiet = np.flatnonzero(start & ~big)
        start &= big
        if quiet.size and self.usual_tau_ms > 0:
            # a step under `min_excess` (clean air) is a candidate too when it is beyond
            # the device's own noise: only the few such steps are looked at
            self.usual.fit(n)
            qr = quiet if rows is None else rows[quiet]
            with np.errstate(invalid="ignore", divide="ignore"):
                lstep = np.abs(np.log(latest[quiet] / prev[quiet]))
            start[quiet] = (self.usual.count[qr] >= self.usual_after) \
                & (lstep >= self.noise_k * self.usual.spread[qr])
        begin = np.flatnonzero(start)
        if begin.size:
            r = begin if rows is None else rows[begin]
            around = nbr[r]
            flat = np.maximum(around.ravel(), 0)
            before = np.where(around.ravel() >= 0, self._level_before(fleet, flat, now_ms),
                              np.nan).reshape(around.shape)
            med_b, enough = self._median_of(around, before)
            with np.errstate(invalid="ignore", divide="ignore"):
                ref = self._level_before(fleet, r, now_ms) / med_b
            known = np.zeros(r.size, bool)
            if self.usual_tau_ms > 0:
                # judged against where the device usually is: a step back after a
                # missed fault, or from one fault to another, is measured from there
                self.usual.fit(n)
                known = self.usual.count[r] >= self.usual_after
                # a young device: from where it was before its last alerted step
                home = self.usual.home[r]
                ref = np.where(known, np.exp(self.usual.log_ratio[r]),
                               np.where(np.isnan(home), ref, np.exp(home)))
                self.usual.home[r[known]] = np.nan  # trusted: no longer needed
                enough |= known
            ok = enough & np.isfinite(ref) & (ref > 0)
            tr.ref[r] = np.where(ok, ref, np.nan)
            tr.up[r] = latest[begin] > prev[begin]
            tr.around[r] = before
            if known.any():
                # the departure is judged over the span since the device was usual, so
                # the neighbours' agreement is too: from their own usual ratios (a plume
                # that began before this step moved them before it, not at it)
                kr = r[known]
                med_now, _ = self._median_of(nbr[kr], self._latest_at(fleet, nbr[kr], now_ms))
                tr.around[kr] = self._usual_levels(nbr[kr], med_now, before[known])
            tr.beyond[r] = 0
            tr.seen[r] = 0
            tracked[begin] = ok
            p2, m2 = self._follow(fleet, now_ms, begin[ok], rows, latest, nbr, tracked, over,
                                  back)
            picked, med = np.r_[picked, p2], np.r_[med, m2]
        if self.usual_tau_ms > 0:
            if self.usual_doubt > 0:
                self._doubt_held(fleet, now_ms, rows, latest, ts, new, nbr, tracked, over)
            p3, m3 = self._usual(fleet, now_ms, rows, latest, ts, new, nbr, tracked, over,
                                 back)
            picked, med = np.r_[picked, p3], np.r_[med, m3]
        self.cand[sel] = tracked
        self.last_over[sel] = over
        tr.seen_ts[sel] = ts
        under = ~over
        self._onset(over, now_ms, n, rows)
        self.evidence = {"now": now_ms, "median": dict(zip(picked.tolist(), med.tolist(),
                                                           strict=True)),
                         "index": fleet.index}
        return self.step(fleet, latest, over, under, now_ms, rows)

    def _follow(self, fleet: FleetState, now_ms: int, local: IntArr, rows: IntArr | None,
                latest: FloatArr, nbr: IntArr, tracked: npt.NDArray[np.bool_],
                over: npt.NDArray[np.bool_], came_back: npt.NDArray[np.bool_]
                ) -> tuple[IntArr, FloatArr]:
        """Judge the followed steps at `local` (positions in the judged rows) at their new
        reading: `over` where the device stays `ratio`× away with no neighbour moving
        the same way for `persist` readings, `tracked` cleared where the step is let go,
        `came_back` where the device is back near where it was (its step back is no new
        candidate). Returns (rows, neighbour median) for the evidence."""
        r = local if rows is None else rows[local]
        if not local.size:
            return r, np.zeros(0)
        tr = self.track
        around = nbr[r]
        vals = self._latest_at(fleet, around, now_ms)
        med, enough = self._median_of(around, vals)
        need = np.log(self.ratio)
        sign = np.where(tr.up[r], 1.0, -1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            # the ratio's move in the direction of the device's step: a device that
            # swings back past where it was is not the same fault
            lq = np.log(latest[local] / med / tr.ref[r]) * sign
            # each neighbour's own move since the step beyond the air's (their
            # median's), in the device's direction: a plume over the device and a
            # neighbour moves both
            air = np.log(med / row_median(tr.around[r]))
            moved = (np.log(vals / tr.around[r]) - air[:, None]) * sign[:, None]
            # and in µg/m³: in clean air a sensor's noise moves its log as far as any
            # fault, so a neighbour at 1 µg/m³ that reads 6 does not share a device's
            # drift from 3 to 58 (the same reason as `jump`'s)
            moved_ug = (vals - tr.around[r] * np.exp(air)[:, None]) * sign[:, None]
            dev_ug = (latest[local] - med * tr.ref[r]) * sign
        with np.errstate(invalid="ignore"):
            # and far enough in µg/m³ for the sensors' own noise at low levels, or
            # beyond the noise of the ratio itself (clean air, neighbours that agree)
            gap = np.abs(latest[local] - med * tr.ref[r])
            excess = gap >= self.min_excess
            # only the few that only this could make beyond are asked
            quiet = np.flatnonzero(~excess & enough & (lq >= need))
            if quiet.size:
                excess[quiet] = self._beyond_noise(r[quiet], gap[quiet],
                                                   (med * tr.ref[r])[quiet], around[quiet],
                                                   vals[quiet])
            beyond = enough & (lq >= need) & excess
            back = ~(lq >= need / 2)  # NaN (no reading, no median) too
            agree = ((moved >= np.maximum(lq, 0)[:, None] / 2)
                     & (moved_ug >= np.maximum(dev_ug, 0)[:, None] / 2)).any(axis=1)
        # readings beyond with no neighbour agreeing, in a row: a neighbour that shares
        # the excursion at any reading says pollution (counted over the whole step, two
        # readings at which a shared plume's noise hid the neighbour were a fault)
        tr.beyond[r] = np.where(agree, 0, tr.beyond[r] + (beyond & ~agree))
        tr.seen[r] += 1
        firing = self.columns.firing[r]
        o = ((beyond & ~agree) | firing) & (tr.beyond[r] >= self.persist) & ~back
        if self.usual_tau_ms > 0:
            # a young device's step that is alerted: remember where it left
            us = self.usual
            us.fit(fleet.size)
            leave = r[o & ~firing & (us.count[r] < self.usual_after)]
            us.home[leave] = np.log(tr.ref[leave])
        # a step that was never beyond the ratio is let go at once (most candidates: a
        # noisy reading), one that was gets `persist` + 2 readings to stay there
        stop = ~o & (back | (tr.beyond[r] == 0) | (tr.seen[r] >= self.persist + 2))
        over[local] = o
        tracked[local[stop]] = False
        with np.errstate(invalid="ignore"):
            came_back[local[stop & (np.abs(lq) < need / 2)]] = True
        tr.ref[r[stop]] = np.nan
        return r, med

    def _usual(self, fleet: FleetState, now_ms: int, rows: IntArr | None, latest: FloatArr,
               ts: IntArr, new: npt.NDArray[np.bool_], nbr: IntArr,
               tracked: npt.NDArray[np.bool_], over: npt.NDArray[np.bool_],
               back: npt.NDArray[np.bool_]) -> tuple[IntArr, FloatArr]:
        """Update the usual ratio of the judged rows that are due (a new reading,
        `usual_every_ms` since their last update, no step followed, no alert firing):
        one neighbour median each. A due row whose ratio is already `ratio`× and
        `min_excess` away from its usual one is not learned from: it is followed as a
        shift from here (its step was missed). Returns (rows, neighbour median) of those."""
        n = fleet.size
        us = self.usual
        us.fit(n)
        sel = slice(0, n) if rows is None else rows
        firing = self.columns.firing[:n][sel]
        due = np.flatnonzero(new & ~tracked & ~back & ~over & ~firing & (latest > 0)
                             & (ts - us.at_ms[sel] >= self.usual_every_ms))
        r = due if rows is None else rows[due]
        if not due.size:
            return r, np.zeros(0)
        us.at_ms[r] = ts[due]
        around = nbr[r]
        vals = self._latest_at(fleet, around, now_ms)
        med, enough = self._median_of(around, vals)
        x = latest[due]
        u, c, anchor = us.log_ratio[r], us.count[r], us.anchor[r]
        known = c >= self.usual_after
        need = np.log(self.ratio)
        with np.errstate(invalid="ignore", divide="ignore"):
            lr = np.log(x / med)
            dev = lr - u
            # below the sensors' own noise (µg/m³) a ratio says nothing
            ok = enough & np.isfinite(lr) & (np.maximum(x, med) >= self.min_excess)
            far = known & (np.abs(dev) >= need)
            # `ratio`× from the anchor though not from the usual ratio: a drift the
            # usual ratio has learned, judged from the anchor
            anchored = ((self.anchor_tau_ms > 0) & (c >= max(self.usual_doubt, self.usual_after))
                        & (np.abs(lr - anchor) >= need) & ~far)
            home = np.where(anchored, anchor, u)
            level = med * np.exp(home)
            depart = ok & (far | anchored) & (np.abs(x - level) >= self.min_excess)
            # in clean air: far from the usual ratio beyond the ratio's own noise. Not
            # from the anchor: a sensor's offset makes its ratio at a few µg/m³ another
            # than in haze, which a week's anchor mixes and a day's usual ratio follows
            quiet = np.flatnonzero(~depart & enough & np.isfinite(lr) & far)
            if quiet.size:
                depart[quiet] = self._beyond_noise(r[quiet], np.abs(x - level)[quiet],
                                                   level[quiet], around[quiet], vals[quiet])
        # a ratio already `ratio`× from the usual one is followed as a shift or, too
        # close in µg/m³ to tell (clean air), skipped: never learned, or a fault through
        # a clean night would teach the device its faulty ratio, clipped step by step,
        # and its end would be called a shift (one only `ratio`× from the anchor is
        # learned unless followed)
        learn = ok & ~far & ~depart
        # the mean of the first updates, then an EWMA of time constant usual_tau_ms whose
        # steps are clipped (a plume or a missed fault moves it only slowly). An update
        # weighs the time since the last one it could have been, at most an update
        # interval or the device's own reading interval: not the time since the last
        # update learned, which spans the freeze of a followed step or an alert, so that
        # the first reading after a fault's alert resolved (often still the fault, in
        # clean air) weighed like hours of agreement and taught the device its fault
        gap = np.maximum(self.usual_every_ms, ts[due] - fleet.prev_ts[self.field][r])
        dt = np.minimum(np.minimum(ts[due] - us.at_prev[r], gap),
                        self.usual_tau_ms).astype(np.float64)
        a = np.maximum(1.0 / (c + 1.0), -np.expm1(-dt / self.usual_tau_ms))
        with np.errstate(invalid="ignore"):
            moved = np.where(known, np.clip(dev, -need / 2, need / 2), dev)
            us.log_ratio[r] = np.where(learn, np.where(c == 0, lr, u + a * moved), u)
            if self.anchor_tau_ms > 0:
                # the anchor: the same clipped steps at a weight of its own time constant;
                # it shares the count, so it is learned afresh with the usual ratio
                wa = np.maximum(1.0 / (c + 1.0), -np.expm1(-dt / self.anchor_tau_ms))
                to = np.where(known, np.clip(lr - anchor, -need / 2, need / 2), lr - anchor)
                us.anchor[r] = np.where(learn, np.where(np.isnan(anchor), lr, anchor + wa * to),
                                        anchor)
            # the ratio's spread: a running mean of its distance from the usual ratio
            # at the same updates, clean air included (there the sensors' additive noise
            # is most of the reading, and the spread must say so); the first update has
            # no distance yet
            noisy = enough & np.isfinite(lr) & ~far & ~depart & (c >= 1)
            us.spread[r] = _running_mean(us.spread[r], np.minimum(np.abs(dev), need), a, c,
                                         noisy)
            # and its distance in the series' units over the last few updates: the
            # noise at today's level (a log spread learned in haze is too small for
            # clean air, one learned in clean air too large for haze; the larger of the
            # two is used, so a change of level errs on the quiet side)
            us.noise[r] = _running_mean(us.noise[r], np.abs(x - med * np.exp(u)),
                                        NOISE_WEIGHT, c, noisy)
        us.count[r] = np.where(learn, np.minimum(c + 1, np.iinfo(np.int32).max), c)
        us.at_prev[r[learn]] = ts[due[learn]]
        # (a step found here is still judged against the usual ratio it was found by)
        self._weigh_doubt(r, dev, known & enough & np.isfinite(lr) & (c < self.usual_doubt))
        go = due[depart]
        if not go.size:
            return r[:0], np.zeros(0)
        gr = r[depart]
        tr = self.track
        tr.ref[gr] = np.exp(home[depart])
        tr.up[gr] = (lr - home)[depart] > 0
        # a neighbour whose usual ratio is not known is taken to read as the median:
        # its level before this reading would already hold a plume that began before
        around_g = nbr[gr]
        at_median = np.where(around_g >= 0, med[depart][:, None], np.nan)
        tr.around[gr] = self._usual_levels(around_g, med[depart], at_median)
        tr.beyond[gr] = 0
        tr.seen[gr] = 0
        tracked[go] = True
        return self._follow(fleet, now_ms, go, rows, latest, nbr, tracked, over, back)

    def _doubt_held(self, fleet: FleetState, now_ms: int, rows: IntArr | None,
                    latest: FloatArr, ts: IntArr, new: npt.NDArray[np.bool_], nbr: IntArr,
                    tracked: npt.NDArray[np.bool_], over: npt.NDArray[np.bool_]) -> None:
        """Weigh the doubt of a young usual ratio (`usual_after` to `usual_doubt`
        updates) while a step is followed or its alert fires, too, at most every
        `usual_every_ms`: one learned through a fault in the device's first hours makes
        its return to its true level a shift, alerted and held, and nothing is learned
        while an alert fires. A doubted one lets its step go (the alert resolves) and is
        learned afresh. One neighbour median per such row and update interval."""
        n = fleet.size
        us = self.usual
        us.fit(n)
        sel = slice(0, n) if rows is None else rows
        c = us.count[sel]
        held = np.flatnonzero(new & (tracked | over | self.columns.firing[:n][sel])
                              & (latest > 0) & (c >= self.usual_after)
                              & (c < self.usual_doubt)
                              & (ts - us.at_ms[sel] >= self.usual_every_ms))
        if not held.size:
            return
        r = held if rows is None else rows[held]
        us.at_ms[r] = ts[held]
        med, enough = self._median_of(nbr[r], self._latest_at(fleet, nbr[r], now_ms))
        with np.errstate(invalid="ignore", divide="ignore"):
            dev = np.log(latest[held] / med) - us.log_ratio[r]
        doubted = self._weigh_doubt(r, dev, enough & np.isfinite(dev))
        go = held[doubted]
        tracked[go] = False
        over[go] = False
        self.track.ref[r[doubted]] = np.nan

    def _weigh_doubt(self, rows: IntArr, dev: FloatArr, seen: npt.NDArray[np.bool_]
                     ) -> npt.NDArray[np.bool_]:
        """Add each row's log distance from its usual ratio (`dev`, where `seen`) to its
        mean side of it over the last `usual_doubt` updates (`UsualRatio.bias`, each
        clipped at `ratio`×; noise, in clean air, falls on both sides). Where that mean is
        half the way to `ratio`×, the usual ratio is forgotten (learned afresh from the
        next update); returns those rows."""
        us = self.usual
        need = np.log(self.ratio)
        with np.errstate(invalid="ignore"):
            b = np.where(seen, us.bias[rows] + (np.clip(dev, -need, need) - us.bias[rows])
                         / max(self.usual_doubt, 1), us.bias[rows])
            doubted: npt.NDArray[np.bool_] = (np.abs(b) >= need / 2) & seen
        us.bias[rows] = np.where(doubted, 0.0, b)
        us.log_ratio[rows[doubted]] = np.nan
        us.count[rows[doubted]] = 0
        return doubted

    def _beyond_noise(self, rows: IntArr, excess: FloatArr, level: FloatArr, around: IntArr,
                      vals: FloatArr) -> npt.NDArray[np.bool_]:
        """Whether each row's `excess` (its reading's distance from `level`, where its
        usual ratio puts it) is `noise_k` times beyond the noise there: the largest of its
        own running spread (a log-ratio, times `level`), its recent noise in the series'
        units (`UsualRatio.noise`) and its neighbours' disagreement now (`vals`: the
        root mean square of their distances from where their usual ratios put them in
        the air they agree on; a neighbour whose usual ratio is not known counts
        as reading the air, its gain as noise). The neighbours' part follows the level: a
        spread learned in hazy air is too small for clean air, where the sensors'
        additive noise is most of the reading. In the series' units, not in log: a
        reading of 0 or 0.1 in clean air is an infinite log-distance but only noise.
        False until the usual ratio is known (`usual_after` updates)."""
        us = self.usual
        out: npt.NDArray[np.bool_] = np.zeros(rows.size, bool)
        if self.usual_tau_ms <= 0 or not rows.size:
            return out
        us.fit(int(rows.max()) + 1)
        known = np.flatnonzero(us.count[rows] >= self.usual_after)
        if not known.size:
            return out
        rows, excess, level = rows[known], excess[known], level[known]
        around, vals = around[known], vals[known]
        flat = np.maximum(around, 0)
        ua = np.where((around >= 0) & (us.count[flat] >= self.usual_after),
                      us.log_ratio[flat], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            # each from the air that the neighbours put it at: their usual ratios are
            # to their own neighbours, whose median is not this one's; root mean
            # square: the median of five distances is too often small
            g = np.exp(ua)
            gone = vals - row_median(vals / g)[:, None] * g
            seen = ~np.isnan(gone)
            # (one less: the median neighbour is at 0 by construction)
            spread_now = np.sqrt(np.where(seen, np.square(gone), 0.0).sum(axis=1)
                                 / (seen.sum(axis=1) - 1))
            noise = np.fmax(np.fmax(us.spread[rows] * level, us.noise[rows]), spread_now)
            out[known] = excess >= self.noise_k * noise
        return out

    def _usual_levels(self, around: IntArr, med: FloatArr, before: FloatArr) -> FloatArr:
        """Where each neighbour in `around` would usually read at today's median `med`:
        a neighbour that left it the same way as the device says pollution (`_follow`).
        A neighbour whose usual ratio is not known yet (few readings above the sensors'
        noise: clean air, a new sensor) reads as `before` says (its level before the
        step, or the median): left unasked, a plume it shared with the device was called
        the device's fault."""
        us = self.usual
        flat = np.maximum(around, 0)
        ua = np.where((around >= 0) & (us.count[flat] >= self.usual_after),
                      us.log_ratio[flat], np.nan)
        levels: FloatArr = np.where(np.isnan(ua), before, med[:, None] * np.exp(ua))
        return levels

    def _level_before(self, fleet: FleetState, rows: IntArr, now_ms: int) -> FloatArr:
        """Mean of each row's readings in the window before its newest one (the previous
        reading when the window holds no other): the level a step is measured from, less
        noisy than one reading."""
        f = self.field
        if rows.size * 4 > fleet.size:
            # the whole fleet's window mean is shared with the rules that read it (spatial,
            # threshold means over the same window): computed once a tick
            mean = fleet.window_mean(f, now_ms, self.window_ms)[rows]
            count = fleet.window_count(f, now_ms, self.window_ms)[rows]
            total = np.where(count > 0, mean * count, 0.0)
        else:
            total, count = fleet.window_sum_count(fleet.fine[f], now_ms, self.window_ms, rows)
        lv = fleet.latest_v[f][rows]
        inside = (now_ms - fleet.latest_ts[f][rows] < self.window_ms) & ~np.isnan(lv)
        rest = total - np.where(inside, lv, 0.0)
        # a mean × count minus the newest reading leaves a few ulps where the others sum
        # to 0 (a sensor reading 0): ±1e-15 is not a level (its log is NaN or huge, where
        # 0's is −inf and the row-by-row sum gives 0)
        rest = np.where(np.abs(rest) <= 64 * np.finfo(np.float64).eps * np.abs(total), 0.0,
                        rest)
        count = count - inside
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, rest / count, fleet.prev_v[f][rows])

    def _latest_at(self, fleet: FleetState, around: IntArr, now_ms: int) -> FloatArr:
        """Newest value (NaN once older than the window) of the rows in `around` (-1: NaN)."""
        v = fleet.latest(self.field, now_ms, self.window_ms, np.maximum(around.ravel(), 0))
        return np.where(around.ravel() >= 0, v, np.nan).reshape(around.shape)

    def _prev_at(self, fleet: FleetState, around: IntArr) -> FloatArr:
        v = fleet.prev_v[self.field][np.maximum(around.ravel(), 0)]
        return np.where(around.ravel() >= 0, v, np.nan).reshape(around.shape)

    def _median_of(self, around: IntArr, values: FloatArr
                   ) -> tuple[FloatArr, npt.NDArray[np.bool_]]:
        """(median, enough neighbours) of rows of neighbour values."""
        return row_median(values), (~np.isnan(values)).sum(axis=1) >= self.min_neighbours

    def _judge_fleet(self, fleet: FleetState, now_ms: int) -> list[Transition]:
        """Stuck, drift and humidity read windows of every device: judged whole."""
        n = fleet.size
        f = self.field
        nbr = self._neighbours(fleet)
        latest = fleet.latest(f, now_ms, self.window_ms)
        total, count = fleet.window_sum_count(fleet.fine[f], now_ms, self.window_ms)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / count, np.nan)
        has = count >= (self.min_readings if self.cause in ("stuck", "drift") else 1)
        with np.errstate(invalid="ignore"):
            if self.cause == "stuck":
                lo, hi = fleet.window_range(f, now_ms, self.window_ms)
                spread = np.where(count > 0, hi - lo, np.nan)  # no reading: no spread
                cand = has & (spread == 0)
                judged = spread
            elif self.cause == "drift":
                # drift is judged over hours: each judging re-judges the next
                # `drift_stride`-th of the fleet (by row), the others keep their last
                # verdict. Counted per judging: a turn read off the clock (the minute)
                # picked only the rows of the minutes the ticks fell on, so on an hourly
                # series ticked at :00 and :10 most rows were never judged again
                due = (np.arange(n) % self.drift_stride) == self.drift_turn % self.drift_stride
                self.drift_turn = (self.drift_turn + 1) % self.drift_stride
                cand = has & due
                judged = mean
            else:
                rh = fleet.latest(self.humidity_field, now_ms, self.window_ms)
                cand = (rh >= self.humidity_above) & ~np.isnan(latest)
                judged = latest
        rows = np.flatnonzero(cand)
        over = np.zeros(n, bool)
        med = np.zeros(0)
        if rows.size:
            if self.cause == "stuck":
                med, enough = self._around(nbr, rows, np.where(np.isfinite(spread),
                                                               spread, np.nan))
                level, _ = self._around(nbr, rows, mean)
                over[rows] = enough & (med > 0)  # the neighbours' readings do change
                med = level
            else:
                med, enough = self._around(nbr, rows, mean)
                x = judged[rows]
                with np.errstate(invalid="ignore"):
                    if self.cause == "drift":
                        bad = ((x > self.ratio * med) | (x < med / self.ratio)) \
                            & (np.maximum(x, med) >= self.min_neighbour_level)
                    else:
                        bad = (x > self.ratio * med) & (x - med >= self.min_neighbour_level)
                if self.cause == "humidity" and bad.any():
                    bad[bad] = ~self._shared(fleet, nbr, rows[bad], x[bad], med[bad], now_ms)
                over[rows] = enough & bad
        if self.cause == "drift":
            if self.last_over.size < n:
                self.last_over = np.r_[self.last_over, np.zeros(n - self.last_over.size, bool)]
            keep = ~due & has
            over[keep] = self.last_over[:n][keep]
            self.last_over[:n] = over
        self._onset(over, now_ms, n, None)
        self.evidence = {"now": now_ms, "median": dict(zip(rows.tolist(), med.tolist(),
                                                           strict=True)),
                         "index": fleet.index}
        return self.step(fleet, judged, over, ~over, now_ms)

    def _shared(self, fleet: FleetState, nbr: IntArr, rows: IntArr, x: FloatArr,
                med: FloatArr, now_ms: int) -> npt.NDArray[np.bool_]:
        """Humidity: whether a neighbour shares the device's excursion: its newest reading
        at least halfway (in log) from the median to the device's reading, at high RH
        itself (within `HUMID_TOLERANCE_PCT` of `humidity_above`). That is a plume in
        humid air, which reaches several sensors; a failed inlet heater reaches one."""
        around = nbr[rows]
        flat = np.maximum(around.ravel(), 0)
        vals = self._latest_at(fleet, around, now_ms)
        rh = fleet.latest(self.humidity_field, now_ms, self.window_ms, flat).reshape(
            around.shape)
        with np.errstate(invalid="ignore", divide="ignore"):
            half = np.log(x / med)[:, None] / 2
            agree = (np.log(vals / med[:, None]) >= half) \
                & (rh >= self.humidity_above - HUMID_TOLERANCE_PCT)
        out: npt.NDArray[np.bool_] = np.any(agree, axis=1)
        return out

    def _onset(self, over: npt.NDArray[np.bool_], now_ms: int, n: int,
               rows: IntArr | None) -> None:
        if self.onset_ms.size < n:
            self.onset_ms = np.r_[self.onset_ms, np.full(n - self.onset_ms.size, -1, np.int64)]
        sel = slice(0, n) if rows is None else rows
        o = self.onset_ms[sel]
        o[over & (o < 0)] = now_ms
        o[~over] = -1
        self.onset_ms[sel] = o

    def context(self, subject: str) -> dict[str, str]:
        if not self.evidence or subject not in self.evidence["index"]:
            return {}
        r = self.evidence["index"][subject]
        med = float(self.evidence["median"].get(r, np.nan))
        since = int(self.onset_ms[r]) if r < self.onset_ms.size else -1
        return {"neighbour_median": "" if np.isnan(med) else f"{med:.1f}",
                "duration_min": "" if since < 0
                else f"{(self.evidence['now'] - since) / 60_000:.0f}",
                "cause": self.cause}

    def blank_fields(self) -> dict[str, Any]:
        return {"onset_ms": np.zeros(0, np.int64), "evidence": {},
                "last_over": np.zeros(0, bool), "cand": np.zeros(0, bool),
                "track": ShiftTrack(), "usual": UsualRatio(), "drift_turn": 0}

    def state_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """The alert columns, and what a restart must not lose: the verdicts and
        candidates, the shift's followed steps and its usual ratios (weeks to relearn)."""
        out = {**self.columns.arrays(), "onset_ms": self.onset_ms,
               "last_over": self.last_over, "cand": self.cand}
        if self.cause == "shift":
            out.update({f"track.{k}": v for k, v in self.track.arrays().items()})
            out.update({f"usual.{k}": v for k, v in self.usual.arrays().items()})
        return out

    def load_state(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        self.columns.load(arrays)
        if "onset_ms" in arrays:
            # grown apart (each when first needed): columns, not one length
            for key, dt in (("onset_ms", np.int64), ("last_over", bool), ("cand", bool)):
                column(arrays, key, dt, "a sensor-fault rule")
            self.onset_ms = arrays["onset_ms"].astype(np.int64)
            self.last_over = arrays["last_over"].astype(bool)
            self.cand = arrays["cand"].astype(bool)
        if self.cause == "shift":
            self.track.load({k.split(".", 1)[1]: v for k, v in arrays.items()
                             if k.startswith("track.")})
            self.usual.load({k.split(".", 1)[1]: v for k, v in arrays.items()
                             if k.startswith("usual.")})

    def clear_rows(self, rows: IntArr) -> None:
        self.columns.clear(rows)
        self.track.clear(rows)
        self.usual.clear(rows)
        rows = rows[rows < self.onset_ms.size]
        self.onset_ms[rows] = -1
        self.last_over[rows[rows < self.last_over.size]] = False
        self.cand[rows[rows < self.cand.size]] = False

    def copy_rows(self, rows: IntArr, src: Self, src_rows: IntArr) -> None:
        super().copy_rows(rows, src, src_rows)
        # judged at the next tick whatever they were: their candidacy is recomputed then
        if rows.size:
            n = int(rows.max()) + 1
            if self.cand.size < n:
                self.cand = np.r_[self.cand, np.zeros(n - self.cand.size, bool)]
            self.cand[rows] = True
            self.track.copy_from(rows, src.track, src_rows)
            self.usual.copy_from(rows, src.usual, src_rows)


@dataclass
class ShiftTrack:
    """Per row, the step a `shift` rule is following: the device's ratio to its
    neighbours' median just before it (`ref`, NaN: none), whether it stepped up, the
    neighbours' levels then
    (`around`, rows × k), readings beyond the ratio and readings seen since the step, and
    the timestamp of the newest reading counted."""

    ref: FloatArr = dataclasses.field(default_factory=lambda: np.zeros(0))
    up: npt.NDArray[np.bool_] = dataclasses.field(default_factory=lambda: np.zeros(0, bool))
    around: FloatArr = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))
    beyond: npt.NDArray[np.int16] = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.int16))
    seen: npt.NDArray[np.int16] = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.int16))
    seen_ts: IntArr = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    def fit(self, n: int, k: int) -> None:
        if self.ref.size >= n and self.around.shape[1] == k:
            return
        m = self.ref.size
        grow = max(n - m, 0)
        self.ref = np.r_[self.ref, np.full(grow, np.nan)]
        self.up = np.r_[self.up, np.zeros(grow, bool)]
        self.around = np.vstack([self.around if self.around.shape[1] == k
                                 else np.full((m, k), np.nan), np.full((grow, k), np.nan)])
        self.beyond = np.r_[self.beyond, np.zeros(grow, np.int16)]
        self.seen = np.r_[self.seen, np.zeros(grow, np.int16)]
        self.seen_ts = np.r_[self.seen_ts, np.zeros(grow, np.int64)]

    def clear(self, rows: IntArr) -> None:
        rows = rows[rows < self.ref.size]
        self.ref[rows] = np.nan
        self.beyond[rows] = 0
        self.seen[rows] = 0
        self.seen_ts[rows] = 0

    def copy_from(self, rows: IntArr, src: ShiftTrack, src_rows: IntArr) -> None:
        if not rows.size or not src.ref.size:
            return
        self.fit(int(rows.max()) + 1, src.around.shape[1])
        ok = src_rows < src.ref.size
        rows, src_rows = rows[ok], src_rows[ok]
        self.ref[rows] = src.ref[src_rows]
        self.up[rows] = src.up[src_rows]
        self.around[rows] = src.around[src_rows]
        self.beyond[rows] = src.beyond[src_rows]
        self.seen[rows] = src.seen[src_rows]
        self.seen_ts[rows] = src.seen_ts[src_rows]

    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return {"ref": self.ref, "up": self.up, "around": self.around,
                "beyond": self.beyond, "seen": self.seen, "seen_ts": self.seen_ts}

    def load(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        if not arrays:
            return  # a snapshot of a rule that had judged nothing yet
        n = one_length(arrays, "followed steps", {"ref": np.float64, "up": bool,
                                                  "beyond": np.int16, "seen": np.int16,
                                                  "seen_ts": np.int64})
        rows_of(arrays, "around", 2, "followed steps")  # rows × neighbours
        checked(arrays, "around", (n, arrays["around"].shape[1]), np.float64)
        self.ref = arrays["ref"].astype(np.float64)
        self.up = arrays["up"].astype(bool)
        self.around = arrays["around"].astype(np.float64)
        self.beyond = arrays["beyond"].astype(np.int16)
        self.seen = arrays["seen"].astype(np.int16)
        self.seen_ts = arrays["seen_ts"].astype(np.int64)


def _running_mean(old: FloatArr, new: FloatArr, weight: float | FloatArr,
                  count: npt.NDArray[np.int32],
                  where: npt.NDArray[np.bool_]) -> FloatArr:
    """An EWMA of weight max(weight, 1/count) where `where`, starting at the first sample
    (`old` NaN: none yet); `old` elsewhere."""
    step = np.maximum(1.0 / np.maximum(count, 1), weight)
    out: FloatArr = np.where(where, np.where(np.isnan(old), new, old + step * (new - old)),
                             old)
    return out


@dataclass
class UsualRatio:
    """Per row, a `shift` rule's estimate of the device's usual ratio to its neighbours'
    median: its log (`log_ratio`, NaN: none yet), how many updates it rests on
    (`count`), when it was last due (`at_ms`) and last learned from (`at_prev`), and
    the running mean of its log distance from the usual ratio at those updates (`spread`,
    NaN: none yet) and of its distance in the series' units over the last few updates
    (`noise`, NaN: none yet): the ratio's own noise, which a departure must clear in
    clean air; and the mean of its clipped log distances from it over the last due
    updates (`bias`): one side of it for hours says the usual ratio is wrong. Until it is
    trusted, `home` (NaN: none) is the log ratio the device left at its last step that
    was alerted: a young device's next step is judged from there (its return is no new
    fault, its leaving again after a moment back is the same one). `anchor` (NaN: none)
    is a slower EWMA of the same log ratio, learned at the same updates and afresh with
    it: what a slow drift cannot teach in a day."""

    log_ratio: FloatArr = dataclasses.field(default_factory=lambda: np.zeros(0))
    spread: FloatArr = dataclasses.field(default_factory=lambda: np.zeros(0))
    noise: FloatArr = dataclasses.field(default_factory=lambda: np.zeros(0))
    count: npt.NDArray[np.int32] = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.int32))
    at_ms: IntArr = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    at_prev: IntArr = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    bias: FloatArr = dataclasses.field(default_factory=lambda: np.zeros(0))
    home: FloatArr = dataclasses.field(default_factory=lambda: np.zeros(0))
    anchor: FloatArr = dataclasses.field(default_factory=lambda: np.zeros(0))

    def fit(self, n: int) -> None:
        grow = n - self.log_ratio.size
        if grow <= 0:
            return
        self.home = np.r_[self.home, np.full(grow, np.nan)]
        self.anchor = np.r_[self.anchor, np.full(grow, np.nan)]
        self.log_ratio = np.r_[self.log_ratio, np.full(grow, np.nan)]
        self.spread = np.r_[self.spread, np.full(grow, np.nan)]
        self.noise = np.r_[self.noise, np.full(grow, np.nan)]
        self.count = np.r_[self.count, np.zeros(grow, np.int32)]
        self.at_ms = np.r_[self.at_ms, np.zeros(grow, np.int64)]
        self.at_prev = np.r_[self.at_prev, np.zeros(grow, np.int64)]
        self.bias = np.r_[self.bias, np.zeros(grow)]

    def clear(self, rows: IntArr) -> None:
        rows = rows[rows < self.log_ratio.size]
        self.log_ratio[rows] = np.nan
        self.spread[rows] = np.nan
        self.noise[rows] = np.nan
        self.count[rows] = 0
        self.at_ms[rows] = 0
        self.at_prev[rows] = 0
        self.bias[rows] = 0.0
        self.home[rows] = np.nan
        self.anchor[rows] = np.nan

    def copy_from(self, rows: IntArr, src: UsualRatio, src_rows: IntArr) -> None:
        if not rows.size or not src.log_ratio.size:
            return
        self.fit(int(rows.max()) + 1)
        ok = src_rows < src.log_ratio.size
        rows, src_rows = rows[ok], src_rows[ok]
        self.log_ratio[rows] = src.log_ratio[src_rows]
        self.spread[rows] = src.spread[src_rows]
        self.noise[rows] = src.noise[src_rows]
        self.count[rows] = src.count[src_rows]
        self.at_ms[rows] = src.at_ms[src_rows]
        self.at_prev[rows] = src.at_prev[src_rows]
        self.bias[rows] = src.bias[src_rows]
        self.home[rows] = src.home[src_rows]
        self.anchor[rows] = src.anchor[src_rows]

    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return {"log_ratio": self.log_ratio, "spread": self.spread, "noise": self.noise,
                "count": self.count, "at_ms": self.at_ms, "at_prev": self.at_prev,
                "bias": self.bias, "home": self.home, "anchor": self.anchor}

    def load(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        if not arrays:
            return
        n = one_length(arrays, "usual ratios", {"log_ratio": np.float64, "count": np.int32,
                                                "at_ms": np.int64, "at_prev": np.int64,
                                                "bias": np.float64})
        for k in ("spread", "noise", "home", "anchor"):
            if k in arrays:
                checked(arrays, k, (n,), np.float64)
        self.log_ratio = arrays["log_ratio"].astype(np.float64)
        # a snapshot from before the spread was kept: learned again from the next updates
        # (before `home` was kept: none)
        for k in ("spread", "noise", "home"):
            setattr(self, k, arrays[k].astype(np.float64) if k in arrays
                    else np.full(self.log_ratio.size, np.nan))
        # before the anchor was kept: it starts at the usual ratio
        self.anchor = (arrays["anchor"].astype(np.float64) if "anchor" in arrays
                       else self.log_ratio.copy())
        self.count = arrays["count"].astype(np.int32)
        self.at_ms = arrays["at_ms"].astype(np.int64)
        self.at_prev = arrays["at_prev"].astype(np.int64)
        # a snapshot from before the bias was kept: kept from here
        self.bias = (arrays["bias"].astype(np.float64) if "bias" in arrays
                     else np.zeros(self.log_ratio.size))
