"""Reduce each interval's sensor frames to one reading, with quality flags."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from airgrid.wire import COUNT_FIELDS, PM_FIELDS
from edge_agent.drivers.pms5003 import PmsFrame

#: PMS5003 effective range (datasheet: 0-500 µg/m³ effective, 1000 maximum).
PM_RANGE_MAX = 1000.0


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
    """Collects frames; `take()` returns the interval's sample, or None if there was none."""

    warmup_s: float = 30.0
    started_at: float = 0.0  # monotonic time of the last wake
    _frames: list[PmsFrame] = field(default_factory=list)
    warmup_frames: int = 0

    def add(self, frame: PmsFrame) -> None:
        if frame.all_zero:
            self.warmup_frames += 1  # warm-up frames are not data
            return
        self._frames.append(frame)

    def take(self, now_monotonic: float, clock_synced: bool) -> Sample | None:
        frames, self._frames = self._frames, []
        if not frames:
            return None
        values: dict[str, float | int] = {}
        for name in PM_FIELDS:
            values[name] = round(trimmed_mean([getattr(f, name) for f in frames]), 2)
        for name in COUNT_FIELDS:
            values[name] = round(trimmed_mean([getattr(f, name) for f in frames]))
        flags: list[str] = []
        if now_monotonic - self.started_at < self.warmup_s:
            flags.append("warming_up")
        if any(float(values[n]) > PM_RANGE_MAX for n in ("pm1_0", "pm2_5", "pm10")):
            flags.append("out_of_range")
        pm1, pm25, pm10 = (float(values[n]) for n in ("pm1_0", "pm2_5", "pm10"))
        if pm1 > pm25 or pm25 > pm10 or (values["n0_3"] == 0 and pm25 > 0):
            flags.append("inconsistent")
        if not clock_synced:
            flags.append("clock_unsynced")
        return Sample(values=values, flags=tuple(flags), frames=len(frames))
