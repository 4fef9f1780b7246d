"""PM2.5 profiles over time that a simulated sensor plays (µg/m³ as a function of seconds)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

Profile = Callable[[float], float]


@dataclass(frozen=True)
class Episode:
    """A pollution episode: baseline, a rise to `peak` from `start` s, held for `length` s."""

    baseline: float = 25.0
    peak: float = 220.0
    start: float = 15.0
    length: float = 30.0
    ramp: float = 5.0

    def __call__(self, t: float) -> float:
        if t < self.start:
            return self.baseline
        rise = min(1.0, (t - self.start) / self.ramp) if self.ramp > 0 else 1.0
        end = self.start + self.ramp + self.length
        if t > end:
            fall = max(0.0, 1.0 - (t - end) / max(self.ramp, 1e-9))
            return self.baseline + (self.peak - self.baseline) * fall
        return self.baseline + (self.peak - self.baseline) * rise


@dataclass(frozen=True)
class Clean:
    """A clean day: baseline with a slow diurnal-like wave."""

    baseline: float = 25.0
    amplitude: float = 8.0
    period: float = 120.0

    def __call__(self, t: float) -> float:
        return self.baseline + self.amplitude * math.sin(2 * math.pi * t / self.period)


SCENARIOS: dict[str, Callable[..., Profile]] = {"clean": Clean, "episode": Episode}


def frozen_after(profile: Profile, at: float) -> Profile:
    """A sensor that freezes `at` seconds in (a stalled fan, a hung measurement): the
    firmware goes on sending frames, each with the value it measured then."""
    held: float | None = None

    def play(t: float) -> float:
        nonlocal held
        if held is not None and t >= at:
            return held
        value = profile(t)
        if t >= at:
            held = value
        return value

    return play


def with_noise(profile: Profile, sigma: float, seed: int) -> Profile:
    rng = random.Random(seed)

    def noisy(t: float) -> float:
        return max(0.0, profile(t) + rng.gauss(0.0, sigma))

    return noisy
