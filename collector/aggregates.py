"""Hourly aggregates per device (mean, count, max), written beside the readings.

Every batch rewrites the aggregate point of each (device, hour) it touched, in the same
write as the readings, so an aggregate is never behind what is stored. Running sums are
checkpointed with the seq state (collector.state_store), so a restart neither loses nor
double-counts an hour.

Memory holds the recent hours only (`hot_hours` behind the newest reading); an older hour
a late reading touches is loaded back from the checkpoint (`load_missing`). An hour older
than the retention (`keep_hours`) is past its use: its checkpoint row is deleted
(`on_expire`), and a reading that old changes no aggregate: it is stored, counted in
`too_old`, and its hour's point in InfluxDB keeps what it had (starting the hour from zero
would overwrite a right mean with the mean of the late few).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from airgrid.measurements import READINGS_HOURLY

HOUR_MS = 3_600_000
#: Fields aggregated: the ones AQI and long-term panels use, and PM2.5 as corrected by the
#: device's registry calibration (absent for uncalibrated devices).
FIELDS = ("pm2_5", "pm10", "pm2_5_corr")


@dataclass
class Agg:
    sums: list[float]
    counts: list[int]
    maxes: list[float]


Key = tuple[str, int]  # (device, hour start ms)


class HourlyAggregates:
    def __init__(self, fields: Sequence[str] = FIELDS, keep_hours: float = 48,
                 hot_hours: int = 2) -> None:
        self.fields = tuple(fields)
        self.keep_ms = int(keep_hours * HOUR_MS)
        self.hot_ms = hot_hours * HOUR_MS
        self.hours: dict[Key, Agg] = {}
        self.touched: set[Key] = set()
        self.load_missing: object = None  # set by the state store: key → Agg | None
        #: set by the state store: hours before this (ms) may leave the checkpoint
        self.on_expire: Callable[[int], None] | None = None
        self.newest_ms = 0  # the newest reading's time (capped at the wall clock)
        self.oldest_hour = 0  # readings before this hour change no aggregate
        self.too_old = 0  # readings older than the retention: stored, not aggregated
        self._evict_before = 0  # the hour the last eviction ran to
        self._recent: set[Key] = set()  # touched since the last eviction: kept one more

    def _get(self, key: Key) -> Agg:
        agg = self.hours.get(key)
        if agg is None:
            loader = self.load_missing
            loaded = loader(key) if callable(loader) else None
            n = len(self.fields)
            agg = loaded if isinstance(loaded, Agg) else Agg([0.0] * n, [0] * n,
                                                               [float("-inf")] * n)
            self.hours[key] = agg
        return agg

    def add(self, device: str, ts: Sequence[int], columns: Sequence[Sequence[float | None]]
            ) -> None:
        """One device's readings: timestamps and one column per aggregated field."""
        if not ts:
            return
        lo, hi = min(ts), max(ts)
        if lo < self.oldest_hour:
            keep = [i for i, t in enumerate(ts) if t >= self.oldest_hour]
            self.too_old += len(ts) - len(keep)
            if not keep:
                return
            ts = [ts[i] for i in keep]
            columns = [[col[i] for i in keep] for col in columns]
            lo = min(ts)
        if hi > self.newest_ms:
            self.newest_ms = hi
        hour = lo - lo % HOUR_MS
        if hi < hour + HOUR_MS:
            # The usual message lies within one hour: builtins sum the columns in C.
            key = (device, hour)
            one = self._get(key)
            self.touched.add(key)
            for f, col in enumerate(columns):
                vals: list[float] = [v for v in col if v is not None]
                if vals:
                    one.sums[f] += sum(vals)
                    one.counts[f] += len(vals)
                    top = max(vals)
                    if top > one.maxes[f]:
                        one.maxes[f] = top
            return
        last_key: Key | None = None
        agg: Agg | None = None
        for i, t in enumerate(ts):
            key = (device, t - t % HOUR_MS)
            if key != last_key:
                agg = self._get(key)
                self.touched.add(key)
                last_key = key
            assert agg is not None
            for f, col in enumerate(columns):
                v = col[i]
                if v is not None:
                    agg.sums[f] += v
                    agg.counts[f] += 1
                    if v > agg.maxes[f]:
                        agg.maxes[f] = v

    def remove(self, device: str, ts: int, values: Sequence[float | None]) -> None:
        """Take back one reading that storage refused; the hour is written again.

        Its max stays: a maximum cannot be taken back from running sums (it is an upper
        bound until the hour is recomputed from the stored readings).
        """
        key = (device, ts - ts % HOUR_MS)
        agg = self._get(key)
        self.touched.add(key)
        for f, v in enumerate(values):
            if v is not None and agg.counts[f]:
                agg.sums[f] -= v
                agg.counts[f] -= 1

    def lines(self, tags_of: dict[str, str]) -> list[str]:
        """Line protocol for every touched hour (device tags from `tags_of`)."""
        out = []
        for key in sorted(self.touched):
            device, hour = key
            agg = self.hours[key]
            fields = []
            for f, name in enumerate(self.fields):
                c = agg.counts[f]
                if c:
                    fields.append(f"{name}_mean={agg.sums[f] / c!r},{name}_count={c}i,"
                                  f"{name}_max={agg.maxes[f]!r}")
            if fields:
                out.append(f"{READINGS_HOURLY}{tags_of[device]} {','.join(fields)} {hour}")
        return out

    def commit(self, now_ms: int) -> list[Key]:
        touched = sorted(self.touched)
        self.touched.clear()
        self._recent.update(touched)
        if not self.newest_ms:  # no reading yet: no time to judge an hour's age by
            return touched
        # Time is the readings' (a replayed backlog moves it too), never past the clock.
        newest = min(now_ms, self.newest_ms)
        # without a checkpoint to load an hour back from, memory holds the whole retention
        hold = self.hot_ms if callable(self.load_missing) else self.keep_ms
        hot = newest - newest % HOUR_MS - hold + HOUR_MS
        if hot > self._evict_before:  # at most once an hour: a walk over every hour held
            self._evict_before = hot
            # an hour touched since the last walk stays one more: its checkpoint may
            # still be in flight, and a reload from the checkpoint would miss it
            for key in [k for k in self.hours if k[1] < hot and k not in self._recent]:
                del self.hours[key]
            self._recent.clear()
            cutoff = newest - self.keep_ms
            oldest = cutoff - cutoff % HOUR_MS
            if oldest > self.oldest_hour:
                self.oldest_hour = oldest
                if self.on_expire is not None:
                    self.on_expire(oldest)
        return touched
