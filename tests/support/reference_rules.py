"""Per-device Python reference of the alert rules: the plain loop the engine replaces.

Every device keeps its raw readings in a list and each tick walks every device and every
rule in Python. Same semantics as `alert_rules` (bucketed windows, latest/previous
reading, hourly means, NowCast, the detector, the pending/firing/resolved machine), so
the property test can require the vectorized engine to produce the same transitions,
and `bench/rules.py` can time the speed-up.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alert_rules import aqi
from alert_rules.anomaly import Detector
from alert_rules.registry import Device
from alert_rules.rule_anomaly import AnomalyRule
from alert_rules.rule_aqi_category import AqiCategoryRule
from alert_rules.rule_base import RuleBase
from alert_rules.rule_deadman import DeadmanRule
from alert_rules.rule_flatline import FlatlineRule
from alert_rules.rule_quality import QualityRule
from alert_rules.rule_range import RangeRule
from alert_rules.rule_rate import RateRule
from alert_rules.rule_sensor_fault import SensorFaultRule
from alert_rules.rule_spatial import SpatialRule
from alert_rules.rule_threshold import ThresholdRule

HOUR_MS = 3_600_000
EARTH_R = 6371.0088
NAN = float("nan")


@dataclass
class Reading:
    ts: int
    values: dict[str, float]
    flagged: bool


@dataclass
class Dev:
    readings: list[Reading] = field(default_factory=list)
    latest: dict[str, tuple[float, int]] = field(default_factory=dict)
    prev: dict[str, tuple[float, int]] = field(default_factory=dict)
    last_ts: int = 0
    first_seen: int = -1
    # anomaly detector per rule name
    det: dict[str, Detector] = field(default_factory=dict)
    # identical readings in a row per field: [value, count, first ts, newest ts]
    runs: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class Shift:
    ref: float = NAN  # the device's ratio to its neighbours' median before its step
    up: bool = False  # it stepped up
    around: list[float] = field(default_factory=list)  # the neighbours' readings then
    beyond: int = 0
    seen: int = 0
    seen_ts: int = 0
    last: bool = False  # the verdict at the last reading
    #: the ratio left at the last alerted step (the usual ratio is never trusted within
    #: these tests: six updates half an hour apart), as log → exp in the engine
    home: float = NAN


@dataclass
class Alert:
    pending: int = -1
    clear: int = -1
    firing: bool = False


class Reference:
    def __init__(self, rules: list[RuleBase], registry: list[Device], resolution_ms: int,
                 fine_slots: int, hour_slots: int) -> None:
        self.rules = rules
        self.registry = {d.id: d for d in registry}
        self.res, self.slots, self.hslots = resolution_ms, fine_slots, hour_slots
        self.devices: dict[str, Dev] = {d.id: Dev() for d in registry}
        self.head = -1  # newest fine bucket
        self.hhead = -1
        self.alerts: dict[tuple[str, str], Alert] = {}
        #: a `shift` rule's step being followed, per (rule, device)
        self.shifts: dict[tuple[str, str], Shift] = {}

    def ingest(self, devices: list[str], ts: Sequence[int],
               values: Mapping[str, Sequence[float]],
               flagged: Sequence[bool] | None = None) -> None:
        batch: dict[str, list[Reading]] = {}
        for i, d in enumerate(devices):
            r = Reading(ts[i], {f: v[i] for f, v in values.items()},
                        bool(flagged[i]) if flagged else False)
            batch.setdefault(d, []).append(r)
        for d in devices:
            self.devices.setdefault(d, Dev())
        if ts:
            self.head = max(self.head, max(ts) // self.res)
            self.hhead = max(self.hhead, max(ts) // HOUR_MS)
        for d, rs in batch.items():
            dev = self.devices[d]
            rs.sort(key=lambda r: r.ts)
            dev.readings.extend(rs)
            dev.last_ts = max(dev.last_ts, max(r.ts for r in rs))
            fields = {f for r in rs for f in r.values}
            for f in fields:
                ok = [r for r in rs if not math.isnan(r.values[f])]
                if not ok:
                    continue
                run = dev.runs.setdefault(f, [NAN, 0, 0, -math.inf])
                for r in ok:
                    if r.ts <= run[3]:
                        continue  # not after the run's readings
                    x = r.values[f]
                    run[:] = ([x, run[1] + 1, run[2], r.ts] if run[1] and x == run[0]
                              else [x, 1, r.ts, r.ts])
                last = ok[-1]
                if last.ts >= dev.latest.get(f, (NAN, 0))[1]:
                    dev.prev[f] = ((ok[-2].values[f], ok[-2].ts) if len(ok) > 1
                                   else dev.latest.get(f, (NAN, 0)))
                    dev.latest[f] = (last.values[f], last.ts)
            for rule in self.rules:
                if isinstance(rule, AnomalyRule):
                    self._detect(dev, rule, [(r.ts, r.values.get(rule.field, NAN)) for r in rs])

    # ---- aggregates over one device's raw readings ----
    def _fine_ok(self, b: int, now: int, span: int) -> bool:
        last = now // self.res
        first = last - -(-span // self.res)
        return first <= b <= last and b > self.head - self.slots and b >= 0

    def _window(self, dev: Dev, f: str, now: int, span: int) -> list[float]:
        return [r.values[f] for r in dev.readings
                if self._fine_ok(r.ts // self.res, now, span) and not math.isnan(r.values[f])]

    def _hour_mean(self, dev: Dev, f: str, b: int) -> float:
        if b < 0 or b <= self.hhead - self.hslots:
            return NAN
        xs = [r.values[f] for r in dev.readings
              if r.ts // HOUR_MS == b and not math.isnan(r.values[f])]
        return sum(xs) / len(xs) if xs else NAN

    def _aggregate(self, dev: Dev, f: str, kind: str, window: int, now: int) -> float:
        if kind == "latest":
            v, t = dev.latest.get(f, (NAN, 0))
            return v if window <= 0 or now - t < window else NAN
        if kind == "mean":
            xs = self._window(dev, f, now, window)
            return sum(xs) / len(xs) if xs else NAN
        cur = now // HOUR_MS
        if kind == "hourly":
            return self._hour_mean(dev, f, cur - 1)
        if kind == "mean_24h":
            hs = [h for i in range(24) if not math.isnan(h := self._hour_mean(dev, f, cur - 1 - i))]
            return sum(hs) / len(hs) if len(hs) >= 20 else NAN
        if kind == "nowcast":
            return nowcast([self._hour_mean(dev, f, cur - 1 - i) for i in range(12)])
        raise ValueError(kind)

    def _detect(self, dev: Dev, rule: AnomalyRule, readings: list[tuple[int, float]]) -> None:
        # The detector's own arithmetic is tested per fault family in
        # tests/alert_rules/test_anomaly.py; here each device gets its own one-row
        # detector, fed one observation per bucket of this batch (the mean of its
        # readings, buckets widened to at most `max_steps`), so the engine's vectorized
        # feeding (batches, buckets, ranks, rows) is checked.
        ok = [(t, x) for t, x in readings if not math.isnan(x)]
        if not ok:
            return
        det = dev.det.setdefault(rule.name, rule.detector.blank())
        b = det.bucket_ms
        width = b * -(-(ok[-1][0] // b - ok[0][0] // b + 1) // det.max_steps)
        buckets: dict[int, list[tuple[int, float]]] = {}
        for t, x in ok:
            buckets.setdefault(t // width, []).append((t, x))
        peak = 0.0
        for group in buckets.values():
            # summed as the engine sums (np.add.reduceat), so the means agree to the bit
            total = float(np.add.reduceat(np.array([x for _, x in group]), [0])[0])
            s = det.update(np.zeros(1, np.int64), np.array([total / len(group)]),
                           np.array([group[-1][0]], np.int64))
            peak = max(peak, float(s[0]))
        det.cols["score"][0] = peak

    # ---- one tick: every device, every rule, in Python ----
    def tick(self, now: int) -> list[tuple[str, str, str, float, int]]:
        self.head = max(self.head, now // self.res)
        self.hhead = max(self.hhead, now // HOUR_MS)
        out = []
        spatial = {r.name: self._spatial(r, now) for r in self.rules
                   if isinstance(r, SpatialRule)}
        faults = {r.name: self._sensor_fault(r, now) for r in self.rules
                  if isinstance(r, SensorFaultRule)}
        for name, dev in self.devices.items():
            if dev.first_seen < 0:
                dev.first_seen = now
            for rule in self.rules:
                if isinstance(rule, SpatialRule):
                    value, over, under = spatial[rule.name][0][name]
                elif isinstance(rule, SensorFaultRule):
                    value, over, under = faults[rule.name][name]
                else:
                    value, over, under = self._judge(rule, name, dev, now)
                state = self._step(self.alerts.setdefault((rule.name, name), Alert()),
                                   over, under, now, rule.for_ms, rule.keep_firing_for_ms)
                if state:
                    out.append((rule.name, name, state, value, now))
        for rule_name, (_, towns) in spatial.items():
            rule = next(r for r in self.rules if r.name == rule_name)
            for town, (share, over, under) in sorted(towns.items()):
                state = self._step(self.alerts.setdefault((rule_name, "town:" + town), Alert()),
                                   over, under, now, rule.for_ms, rule.keep_firing_for_ms)
                if state:
                    out.append((rule_name, town, state, share, now))
        return out

    # ---- spatial: neighbours by brute force, medians and township shares in Python ----
    def _neighbours(self, rule: SpatialRule | SensorFaultRule | AnomalyRule
                    ) -> dict[str, list[str]]:
        key = ("nbr", rule.radius_km, rule.max_neighbours, len(self.devices))
        if getattr(self, "_nbr_key", None) == key:
            return self._nbr  # type: ignore[no-any-return,has-type]
        names = list(self.devices)
        pos = {}
        for d in names:
            r = self.registry.get(d)
            if r is not None and not (math.isnan(r.lat) or math.isnan(r.lon)):
                pos[d] = (r.lat, r.lon)
        lats = [self.registry[d].lat if d in self.registry else NAN for d in names]
        valid = [x for x in lats if not math.isnan(x)]
        lat0 = sum(valid) / len(valid) if valid else 0.0
        xy = {d: (math.radians(lo) * EARTH_R * math.cos(math.radians(lat0)),
                  math.radians(la) * EARTH_R) for d, (la, lo) in pos.items()}
        nbr: dict[str, list[str]] = {}
        order = {d: i for i, d in enumerate(names)}
        for d in names:
            if d not in xy:
                nbr[d] = []
                continue
            x, y = xy[d]
            near = sorted((math.hypot(x - ox, y - oy), order[o], o)
                          for o, (ox, oy) in xy.items() if o != d)
            nbr[d] = [o for dist, _, o in near if dist <= rule.radius_km][:rule.max_neighbours]
        self._nbr_key, self._nbr = key, nbr
        return nbr

    def _spatial(self, rule: SpatialRule, now: int) -> tuple[
            dict[str, tuple[float, bool, bool]], dict[str, tuple[float, bool, bool]]]:
        v = {d: self._aggregate(dev, rule.field, "mean", rule.window_ms, now)
             for d, dev in self.devices.items()}
        towns: dict[str, list[float]] = {}
        for d, x in v.items():
            r = self.registry.get(d)
            if r is not None and r.township:
                towns.setdefault(r.township, [])
                if not math.isnan(x):
                    towns[r.township].append(x)
        town_out: dict[str, tuple[float, bool, bool]] = {}
        episode: dict[str, bool] = {}
        for t, xs in towns.items():
            share = sum(x > rule.regional_above for x in xs) / len(xs) if xs else NAN
            was = self.alerts.get((rule.name, "town:" + t), Alert()).firing
            episode[t] = share >= rule.regional_fraction or was
            town_out[t] = (share, share >= rule.regional_fraction,
                           share < rule.regional_fraction * 0.8)
        nbr = self._neighbours(rule)
        dev_out = {}
        for d in v:
            x = self._level(self.devices[d], rule, now)  # the device itself: two readings
            around = [v[o] for o in nbr[d] if not math.isnan(v[o])]
            enough = len(around) >= rule.min_neighbours
            med = statistics.median(around) if around else NAN
            r = self.registry.get(d)
            ep = bool(r is not None and r.township and episode.get(r.township, False))
            far = enough and x > med * rule.ratio and x - med > rule.min_excess
            run = self.devices[d].runs.get(rule.field, [NAN, 0, 0, 0])
            frozen = (rule.frozen_readings > 0 and run[1] >= rule.frozen_readings
                      and now - run[2] >= rule.window_ms)
            far = far and not frozen
            heard = self.devices[d].latest.get(rule.field, (NAN, 0))[1]
            silent = now - heard > rule.pair_ms
            back = ((x <= med * rule.ratio * 0.9 or not enough) if not math.isnan(x)
                    else silent)
            dev_out[d] = (x, far and not ep, back or ep)
        return dev_out, town_out

    def _level(self, dev: Dev, rule: SpatialRule, now: int) -> float:
        """What two readings agree on: the window's mean without its highest reading, or
        the lower of its only reading and the one before (if recent enough)."""
        xs = self._window(dev, rule.field, now, rule.window_ms)
        if len(xs) >= 2:
            return (sum(xs) - max(xs)) / (len(xs) - 1)
        if not xs:
            return NAN
        prev, prev_ts = dev.prev.get(rule.field, (NAN, 0))
        latest_ts = dev.latest.get(rule.field, (NAN, 0))[1]
        if prev_ts > 0 and latest_ts - prev_ts <= rule.pair_ms:
            return min(xs[0], prev)
        return NAN

    # ---- sensor faults: each device against the median of its neighbours ----
    def _sensor_fault(self, rule: SensorFaultRule, now: int
                      ) -> dict[str, tuple[float, bool, bool]]:
        f, w = rule.field, rule.window_ms
        nbr = self._neighbours(rule)
        win = {d: self._window(dev, f, now, w) for d, dev in self.devices.items()}
        mean = {d: sum(xs) / len(xs) if xs else NAN for d, xs in win.items()}
        latest = {d: self._aggregate(dev, f, "latest", w, now) for d, dev in self.devices.items()}
        prev = {d: dev.prev.get(f, (NAN, 0))[0] for d, dev in self.devices.items()}
        spread = {d: max(xs) - min(xs) if xs else NAN for d, xs in win.items()}

        def around(d: str, of: dict[str, float]) -> tuple[float, bool]:
            xs = [of[o] for o in nbr[d] if not math.isnan(of[o])]
            return (statistics.median(xs) if xs else NAN), len(xs) >= rule.min_neighbours

        out = {}
        for d, dev in self.devices.items():
            x, over = latest[d], False
            if rule.cause == "shift":
                over = self._shift(rule, d, dev, x, prev[d], nbr[d], latest, now)
            elif rule.cause == "stuck":
                x = spread[d]
                if len(win[d]) >= rule.min_readings and x == 0:
                    med, enough = around(d, spread)
                    over = enough and med > 0
            elif rule.cause == "zero":
                if x == 0:
                    med, enough = around(d, latest)
                    over = enough and med >= rule.min_neighbour_level
            elif rule.cause == "jump":
                step = abs(x - prev[d])
                if step > (rule.ratio - 1) * max(min(x, prev[d]), 0) \
                        and step > rule.min_neighbour_level:
                    med, enough = around(d, latest)
                    med_prev, _ = around(d, prev)
                    still = abs(med - med_prev) <= max(0.2 * max(med_prev, 1e-9), 0.1 * step)
                    # no neighbour stepped the same way by half as much
                    sign = 1.0 if x > prev[d] else -1.0
                    shared = any((latest[o] - prev[o]) * sign >= step / 2 for o in nbr[d]
                                 if not (math.isnan(latest[o]) or math.isnan(prev[o])))
                    over = enough and still and not shared and (
                        x > rule.ratio * med or x < med / rule.ratio)
            elif rule.cause == "drift":
                x = mean[d]
                if len(win[d]) >= rule.min_readings:
                    med, enough = around(d, mean)
                    over = enough and (x > rule.ratio * med or x < med / rule.ratio) \
                        and max(x, med) >= rule.min_neighbour_level
            else:
                rh = self._aggregate(dev, rule.humidity_field, "latest", w, now)
                if rh >= rule.humidity_above and not math.isnan(x):
                    med, enough = around(d, mean)
                    over = enough and x > rule.ratio * med and x - med >= rule.min_neighbour_level
            out[d] = (x, over, not over)
        return out

    def _level_before(self, rule: SensorFaultRule, dev: Dev, now: int) -> float:
        """Mean of the window's readings but the newest (the previous reading if none)."""
        xs = self._window(dev, rule.field, now, rule.window_ms)
        lv, lt = dev.latest.get(rule.field, (NAN, 0))
        if now - lt < rule.window_ms and not math.isnan(lv):
            xs = xs[:]
            xs.remove(lv)
        return sum(xs) / len(xs) if xs else dev.prev.get(rule.field, (NAN, 0))[0]

    def _shift(self, rule: SensorFaultRule, d: str, dev: Dev, x: float, p: float,
               nbr: list[str], latest: dict[str, float], now: int) -> bool:
        """The `shift` cause of one device: start following a step, count the readings
        that stay beyond the ratio with no neighbour moving the same way."""
        st = self.shifts.setdefault((rule.name, d), Shift())
        ts = dev.latest.get(rule.field, (NAN, 0))[1]
        if ts == st.seen_ts:
            return st.last  # judged at the device's own readings only
        st.seen_ts = ts
        pad = [NAN] * (rule.max_neighbours - len(nbr))

        def median(xs: list[float]) -> float:
            ok = [v for v in xs if not math.isnan(v)]
            return statistics.median(ok) if ok else NAN

        firing = self.alerts.get((rule.name, d), Alert()).firing
        came_back = [False]

        def follow() -> bool:
            vals = [latest[o] for o in nbr] + pad
            enough = sum(not math.isnan(v) for v in vals) >= rule.min_neighbours
            need = math.log(rule.ratio)
            with np.errstate(invalid="ignore", divide="ignore"):
                sign = 1.0 if st.up else -1.0
                lq = float(np.log(np.float64(x) / median(vals) / st.ref)) * sign
                air = float(np.log(np.float64(median(vals)) / median(st.around)))
                moved = (np.log(np.array(vals) / np.array(st.around)) - air) * sign
                moved_ug = (np.array(vals) - np.array(st.around) * np.exp(air)) * sign
                dev_ug = (x - median(vals) * st.ref) * sign
                excess = abs(x - median(vals) * st.ref) >= rule.min_excess
                beyond = enough and lq >= need and excess
                back = not lq >= need / 2
                agree = bool(((moved >= max(lq, 0.0) / 2)
                              & (moved_ug >= max(dev_ug, 0.0) / 2)).any())
            # in a row: a neighbour agreeing at any reading says pollution
            st.beyond = 0 if agree else st.beyond + (beyond and not agree)
            st.seen += 1
            over = ((beyond and not agree) or firing) and st.beyond >= rule.persist \
                and not back
            if over and not firing and rule.usual_tau_ms > 0:
                st.home = float(np.exp(np.log(np.float64(st.ref))))
            if not over and (back or st.beyond == 0 or st.seen >= rule.persist + 2):
                st.ref = NAN
                came_back[0] = abs(lq) < need / 2
            return over

        over = False
        if not math.isnan(st.ref):
            over = follow()
        if (math.isnan(st.ref) and not came_back[0] and x > 0 and p > 0
                and (x >= rule.step_ratio * p or p >= rule.step_ratio * x)
                and abs(x - p) >= rule.min_excess):
            before = [self._level_before(rule, self.devices[o], now) for o in nbr] + pad
            ok = sum(not math.isnan(v) for v in before) >= rule.min_neighbours
            with np.errstate(invalid="ignore", divide="ignore"):
                ref = float(np.float64(self._level_before(rule, dev, now)) / median(before))
            if rule.usual_tau_ms > 0 and not math.isnan(st.home):
                ref = st.home  # from where it was before its last alerted step
            st.ref = ref if ok and math.isfinite(ref) and ref > 0 else NAN
            st.around, st.beyond, st.seen, st.up = before, 0, 0, x > p
            if not math.isnan(st.ref):
                over = follow()
        st.last = over
        return over

    def _contradicted(self, rule: AnomalyRule, name: str, now: int) -> bool:
        nbr = self._neighbours(rule)
        lat = {d: self._aggregate(dev, rule.field, "latest", rule.max_age_ms, now)
               for d, dev in self.devices.items()}
        x = lat[name]
        det = self.devices[name].det.get(rule.name)
        if det is not None and det.size and bool(det.about_previous[0]):
            # the score is about the previous reading (a spike that came back): that
            # reading against the neighbours' previous values
            lat = {d: dev.prev.get(rule.field, (NAN, 0))[0] for d, dev in self.devices.items()}
            x = float(det.cols["prev"][0])
        xs = [lat[o] for o in nbr[name] if not math.isnan(lat[o])]
        if len(xs) < rule.min_neighbours:
            return False
        med = statistics.median(xs)
        return x > rule.ratio * med or x < med / rule.ratio

    def _judge(self, rule: RuleBase, name: str, dev: Dev, now: int) -> tuple[float, bool, bool]:
        if isinstance(rule, ThresholdRule):
            v = self._aggregate(dev, rule.field, rule.aggregate, rule.window_ms, now)
            return v, v > rule.above, v < rule.clear_below
        if isinstance(rule, AqiCategoryRule):
            c = self._aggregate(dev, rule.field, rule.aggregate, rule.window_ms, now)
            i = float(aqi.get(rule.standard).iaqi(rule.pollutant, [c])[0])
            return i, i > rule.edge, i <= rule.edge - rule.clear_margin
        if isinstance(rule, DeadmanRule):
            since = dev.last_ts if dev.last_ts > 0 else dev.first_seen
            reg = self.registry.get(name)
            limit = rule.absent_ms + (rule.grace_ms if reg and reg.link == "cellular" else 0)
            over = now - since >= limit
            return (now - since) / 1000.0, over, not over
        if isinstance(rule, FlatlineRule):
            xs = self._window(dev, rule.field, now, rule.window_ms)
            spread = max(xs) - min(xs) if xs else NAN
            over = len(xs) >= rule.min_readings and spread <= rule.tolerance
            under = bool(xs) and spread > rule.tolerance
            if rule.tolerance == 0:  # identical readings in a row, however far apart
                run = dev.runs.get(rule.field, [NAN, 0, 0, 0])
                run_n, run_since = run[1], run[2]
                if (run_n >= rule.min_readings and not under
                        and now - run_since >= rule.window_ms):
                    spread, over = 0.0, True
                under = not over and (under or 0 < run_n < rule.min_readings)
            return spread, over, under
        if isinstance(rule, RangeRule):
            v, t = dev.latest.get(rule.field, (NAN, 0))
            if rule.max_age_ms > 0 and now - t >= rule.max_age_ms:
                v = NAN
            return v, v < rule.min or v > rule.max, rule.min <= v <= rule.max
        if isinstance(rule, QualityRule):
            rs = [r for r in dev.readings if self._fine_ok(r.ts // self.res, now, rule.window_ms)]
            frac = sum(r.flagged for r in rs) / len(rs) if rs else NAN
            return (frac, len(rs) >= rule.min_readings and frac > rule.above,
                    frac < rule.clear_below)
        if isinstance(rule, RateRule):
            (v1, t1), (v0, t0) = (dev.latest.get(rule.field, (NAN, 0)),
                                  dev.prev.get(rule.field, (NAN, 0)))
            dt = t1 - t0
            ok = 0 < dt <= rule.max_gap_ms and now - t1 <= rule.max_gap_ms
            rate = (v1 - v0) / dt * 60_000.0 if ok else NAN
            if rule.direction == "both":
                rate = abs(rate)
            return rate, rate > rule.above, rate < rule.clear_below or math.isnan(rate)
        if isinstance(rule, AnomalyRule):
            _, t = dev.latest.get(rule.field, (NAN, 0))
            d = dev.det.get(rule.name)
            s = float(d.score[0]) if d is not None and d.size else 0.0
            score = s if now - t <= rule.max_age_ms else 0.0
            over = score > rule.above
            # a stuck run or an exact 0 is the sensor's own doing, whatever the
            # neighbours read: left to the sensor-fault rules
            own = d is not None and d.size > 0 and bool(d.own_fault[0])
            if over and rule.neighbours and (own or self._contradicted(rule, name, now)):
                over = False
            return score, over, not over
        raise TypeError(f"no reference for {rule.kind}")

    @staticmethod
    def _step(a: Alert, over: bool, under: bool, now: int, for_ms: int,
              keep_ms: int) -> str | None:
        if not a.firing:
            if not over:
                a.pending = -1
                return None
            new = a.pending == -1
            if new:
                a.pending = now
            if now - a.pending >= for_ms:
                a.firing, a.pending, a.clear = True, -1, -1
                return "firing"
            return "pending" if new else None
        if not under:
            a.clear = -1
            return None
        if a.clear == -1:
            a.clear = now
        if now - a.clear >= keep_ms:
            a.firing, a.pending, a.clear = False, -1, -1
            return "resolved"
        return None


def nowcast(c: list[float]) -> float:
    """EPA NowCast of 12 hourly means, newest first (see alert_rules.nowcast)."""
    if sum(not math.isnan(x) for x in c[:3]) < 2:
        return NAN
    ok = [(i, x) for i, x in enumerate(c) if not math.isnan(x)]
    lo, hi = min(x for _, x in ok), max(x for _, x in ok)
    w = max(lo / hi if hi > 0 else 1.0, 0.5)
    num = sum(w ** i * x for i, x in ok)
    den = sum(w ** i for i, _ in ok)
    return round(math.floor(round(num / den / 0.1, 6)) * 0.1, 6)


def from_engine(engine: Any, registry: list[Device] = ()) -> Reference:  # type: ignore[assignment]
    f = engine.fleet
    return Reference(engine.rules, list(registry), f.resolution_ms, f.fine_slots, f.hour_slots)
