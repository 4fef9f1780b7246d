"""Reduce each interval's sensor frames to one reading, with quality flags."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from airgrid.wire import COUNT_FIELDS
from edge_agent.drivers.base import Measurement

#: Plantower PMS5003 effective range (datasheet: 0-500 µg/m³ effective, 1000 maximum).
PM_RANGE_MAX = 1000.0
#: Above this RH low-cost optical sensors over-read as particles take up water
#: (e.g. Jayaratne et al. 2018, Atmos. Meas. Tech. 11, 4883: PMS1003 from ~75 % RH).
HIGH_HUMIDITY_PCT = 85.0


def trimmed_mean(values: Sequence[float]) -> float:
    """Mean after dropping one minimum and one maximum (plain mean below 3 values)."""
    if len(values) >= 3:
        ordered = sorted(values)[1:-1]
        return sum(ordered) / len(ordered)
    return sum(values) / len(values)


@dataclass(frozen=True)
class Sample:
    """What one interval gives: the reduced values and flags, before it gets a seq."""

    values: dict[str, float | int]
    flags: tuple[str, ...]
    frames: int


@dataclass
class Sampler:
    """Collects frames; `take()` returns the interval's sample, or None if there was none.

    `stuck_frames` identical frames in a row (a frozen fan or a hung firmware repeating
    its last frame) flag the sample `stuck`.
    """

    warmup_s: float = 30.0
    started_at: float = 0.0  # monotonic time of the last wake
    pm_range_max: float = PM_RANGE_MAX
    stuck_frames: int = 60
    high_humidity_pct: float = HIGH_HUMIDITY_PCT
    _frames: list[dict[str, float | int]] = field(default_factory=list)
    _last: dict[str, float | int] | None = None
    _same: int = 0
    warmup_frames: int = 0

    def add(self, frame: Measurement) -> None:
        if frame.warming_up:
            self.warmup_frames += 1  # warm-up frames are not data
            return
        values = frame.fields()
        self._same = self._same + 1 if values == self._last else 1
        self._last = values
        self._frames.append(values)

    def woke(self, at_monotonic: float) -> None:
        """The sensor was (re)started: its readings are warm-up for `warmup_s`."""
        self.started_at = at_monotonic

    def take(self, now_monotonic: float, clock_synced: bool) -> Sample | None:
        frames, self._frames = self._frames, []
        if not frames:
            return None
        names = [n for n in frames[0] if all(n in f for f in frames)]
        values: dict[str, float | int] = {}
        for name in names:
            mean = trimmed_mean([float(f[name]) for f in frames])
            values[name] = round(mean) if name in COUNT_FIELDS else round(mean, 2)
        flags: list[str] = []
        if now_monotonic - self.started_at < self.warmup_s:
            flags.append("warming_up")
        if self._same >= self.stuck_frames:
            flags.append("stuck")
        if any(float(values.get(n, 0)) > self.pm_range_max for n in ("pm1_0", "pm2_5", "pm10")):
            flags.append("out_of_range")
        if self._inconsistent(values):
            flags.append("inconsistent")
        rh = values.get("humidity_pct")
        if rh is not None and float(rh) > self.high_humidity_pct:
            flags.append("high_humidity")
        if not clock_synced:
            flags.append("clock_unsynced")
        return Sample(values=values, flags=tuple(flags), frames=len(frames))

    @staticmethod
    def _inconsistent(values: dict[str, float | int]) -> bool:
        # Mass must not shrink as the size cut grows: PM1.0 <= PM2.5 <= PM10.
        order = [float(values[n]) for n in ("pm1_0", "pm2_5", "pm10") if n in values]
        if any(a > b for a, b in itertools.pairwise(order)):
            return True
        # Mass without any counted particle cannot be.
        return "n0_3" in values and values["n0_3"] == 0 and float(values.get("pm2_5", 0)) > 0
