"""A robust streaming anomaly detector, vectorized across devices.

Per device it keeps a Huber-clipped EWMA of the level and of the absolute deviation
(residuals are clipped at `clip` scales before they update the state, so a spike does not
drag the baseline), plus the run length of identical readings (a stuck sensor). Each new
reading gets a score in 0..1: max(spike score, stuck score), where the spike score is
z²/(z²+z0²) with z the residual in robust scales (0.5 at z = z0).

Incremental: O(1) per reading and device, state in numpy columns, no windows to keep.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from alert_rules.state import FloatArr, IntArr

# For a normal distribution, E|X − μ| = σ·√(2/π), so σ ≈ 1.2533 · mean absolute deviation.
MAD_TO_SIGMA = 1.2533


@dataclass
class Detector:
    alpha: float = 0.1  # EWMA weight of a new reading
    z0: float = 4.0  # residual (in robust sigmas) that scores 0.5
    clip: float = 3.0  # residuals beyond this many sigmas update the state only this far
    floor: float = 2.0  # µg/m³: smallest scale (sensor resolution and low-level noise)
    floor_rel: float = 0.1  # smallest scale relative to the level
    warmup: int = 5  # readings before a device is scored
    stuck_run: int = 8  # identical readings in a row that score 1.0
    mu: FloatArr = field(default_factory=lambda: np.zeros(0))
    dev: FloatArr = field(default_factory=lambda: np.zeros(0))
    seen: IntArr = field(default_factory=lambda: np.zeros(0, np.int64))
    run: IntArr = field(default_factory=lambda: np.zeros(0, np.int64))
    last: FloatArr = field(default_factory=lambda: np.zeros(0))
    score: FloatArr = field(default_factory=lambda: np.zeros(0))

    def fit(self, n: int) -> None:
        have = self.mu.size
        if n <= have:
            return
        extra = max(n - have, have)
        self.mu = np.r_[self.mu, np.zeros(extra)]
        self.dev = np.r_[self.dev, np.zeros(extra)]
        self.seen = np.r_[self.seen, np.zeros(extra, np.int64)]
        self.run = np.r_[self.run, np.zeros(extra, np.int64)]
        self.last = np.r_[self.last, np.full(extra, np.nan)]
        self.score = np.r_[self.score, np.zeros(extra)]

    def update(self, rows: IntArr, x: FloatArr) -> FloatArr:
        """One reading for each of `rows` (distinct); returns their scores."""
        ok = ~np.isnan(x)
        rows, x = rows[ok], x[ok]
        self.fit(int(rows.max()) + 1 if rows.size else 0)
        mu, dev, seen = self.mu[rows], self.dev[rows], self.seen[rows]
        first = seen == 0
        scale = np.maximum.reduce([MAD_TO_SIGMA * dev, np.full(x.size, self.floor),
                                   self.floor_rel * np.abs(mu)])
        r = x - mu
        z = np.abs(r) / scale
        spike = np.where(seen >= self.warmup, z * z / (z * z + self.z0 * self.z0), 0.0)
        run = np.where(x == self.last[rows], self.run[rows] + 1, 1)
        half = self.stuck_run / 2
        stuck = np.clip((run - half) / half, 0.0, 1.0)
        score = np.maximum(spike, stuck)
        rc = np.clip(r, -self.clip * scale, self.clip * scale)
        self.mu[rows] = np.where(first, x, mu + self.alpha * rc)
        self.dev[rows] = np.where(first, 0.0, dev + self.alpha * (np.abs(rc) - dev))
        self.seen[rows] = seen + 1
        self.run[rows] = run
        self.last[rows] = x
        self.score[rows] = score
        out = np.zeros(ok.size)
        out[ok] = score
        return out

    def update_batch(self, rows: IntArr, x: FloatArr) -> None:
        """Readings sorted by (row, time), several per row allowed: rank by rank."""
        if rows.size == 0:
            return
        starts = np.r_[0, np.flatnonzero(np.diff(rows)) + 1]
        counts = np.diff(np.r_[starts, rows.size])
        rank = np.arange(rows.size) - np.repeat(starts, counts)
        for k in range(int(counts.max())):
            sel = rank == k
            self.update(rows[sel], x[sel])

    def blank(self) -> Detector:
        """The same parameters, no devices."""
        return Detector(self.alpha, self.z0, self.clip, self.floor, self.floor_rel,
                        self.warmup, self.stuck_run)

    def clear(self, rows: IntArr) -> None:
        """Forget these devices: their next reading starts a new baseline."""
        rows = rows[rows < self.mu.size]
        self.mu[rows] = 0.0
        self.dev[rows] = 0.0
        self.seen[rows] = 0
        self.run[rows] = 0
        self.last[rows] = np.nan
        self.score[rows] = 0.0

    def copy_from(self, rows: IntArr, src: Detector, src_rows: IntArr) -> None:
        if rows.size == 0:
            return
        self.fit(int(rows.max()) + 1)
        src.fit(int(src_rows.max()) + 1)
        for name in ("mu", "dev", "seen", "run", "last", "score"):
            getattr(self, name)[rows] = getattr(src, name)[src_rows]

    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return {"mu": self.mu, "dev": self.dev, "seen": self.seen, "run": self.run,
                "last": self.last, "score": self.score}

    def load(self, a: dict[str, npt.NDArray[np.generic]]) -> None:
        self.mu, self.dev, self.last, self.score = (
            a["mu"].astype(np.float64), a["dev"].astype(np.float64),
            a["last"].astype(np.float64), a["score"].astype(np.float64))
        self.seen, self.run = a["seen"].astype(np.int64), a["run"].astype(np.int64)
