"""Detectors the anomaly evaluation compares against, each scoring one series reading by
reading with the same `update(x) -> score in 0..1` shape:

- `SpikeReference`: the detector the rules shipped before (a Huber-clipped EWMA with an
  absolute floor of 2 µg/m³ and a run-length stuck score), kept here verbatim in its
  scalar form so every evaluation runs it side by side with the current one;
- `EwmaZ`: a plain EWMA z-score (mean and variance by EWMA, score from |z|).

`score_series` runs one of them over a series.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

MAD_TO_SIGMA = 1.2533


@dataclass
class SpikeReference:
    alpha: float = 0.1
    z0: float = 4.0
    clip: float = 3.0
    floor: float = 2.0
    floor_rel: float = 0.1
    warmup: int = 5
    stuck_run: int = 8
    mu: float = 0.0
    dev: float = 0.0
    seen: int = 0
    run: int = 0
    last: float = math.nan

    def update(self, x: float, ts_ms: int | None = None) -> float:
        scale = max(MAD_TO_SIGMA * self.dev, self.floor, self.floor_rel * abs(self.mu))
        r = x - self.mu
        z = abs(r) / scale
        spike = z * z / (z * z + self.z0 * self.z0) if self.seen >= self.warmup else 0.0
        self.run = self.run + 1 if x == self.last else 1
        half = self.stuck_run / 2
        stuck = min(max((self.run - half) / half, 0.0), 1.0)
        rc = min(max(r, -self.clip * scale), self.clip * scale)
        if self.seen == 0:
            self.mu, self.dev = x, 0.0
        else:
            self.mu += self.alpha * rc
            self.dev += self.alpha * (abs(rc) - self.dev)
        self.seen += 1
        self.last = x
        return max(spike, stuck)


@dataclass
class EwmaZ:
    """z = (x − m)/s with m, s² EWMAs (α = 0.05); score = z²/(z² + 9) (0.5 at z = 3)."""

    alpha: float = 0.05
    warmup: int = 12
    m: float = 0.0
    v: float = 0.0
    seen: int = 0

    def update(self, x: float, ts_ms: int | None = None) -> float:
        if self.seen == 0:
            self.m = x
        z = abs(x - self.m) / math.sqrt(self.v) if self.v > 0 else 0.0
        d = x - self.m
        self.m += self.alpha * d
        self.v = (1 - self.alpha) * (self.v + self.alpha * d * d)
        self.seen += 1
        return z * z / (z * z + 9.0) if self.seen > self.warmup else 0.0


class ScalarDetector(Protocol):
    def update(self, x: float) -> float: ...


def score_series(make: Callable[[], ScalarDetector], y: npt.NDArray[np.float64]
                 ) -> npt.NDArray[np.float64]:
    """A fresh detector's score at every reading of `y`; a missing value (NaN) is no
    reading, scored 0."""
    update = make().update
    out = np.zeros(y.size)
    for i, v in enumerate(y.tolist()):
        if not math.isnan(v):
            out[i] = update(v)
    return out
