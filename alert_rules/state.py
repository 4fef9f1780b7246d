"""Engine state: one row per device, recent readings in a ring buffer of numpy columns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArr = npt.NDArray[np.float64]
IntArr = npt.NDArray[np.int64]


@dataclass
class FleetState:
    """Recent values of each watched field per device.

    `values[f]` is (devices × window) float64 with NaN for empty slots, `ts` the matching
    epoch ms (0 = empty); `head` is the next slot each device writes. Rows are added as
    devices appear and never move, so rule state arrays can be indexed by the same row.
    """

    fields: tuple[str, ...]
    window: int = 256
    devices: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    values: dict[str, FloatArr] = field(default_factory=dict)
    ts: IntArr = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    head: IntArr = field(default_factory=lambda: np.zeros(0, np.int64))
    last_ts: IntArr = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        if self.ts.shape[1] != self.window:
            self.ts = np.zeros((0, self.window), np.int64)
            self.values = {f: np.full((0, self.window), np.nan) for f in self.fields}

    @property
    def size(self) -> int:
        return len(self.devices)

    def rows_for(self, devices: list[str]) -> IntArr:
        """Row of each device, adding rows for new ones (capacity grows by doubling)."""
        new = [d for d in dict.fromkeys(devices) if d not in self.index]
        if new:
            for d in new:
                self.index[d] = len(self.devices)
                self.devices.append(d)
            self._grow(len(self.devices))
        return np.fromiter((self.index[d] for d in devices), np.int64, len(devices))

    def _grow(self, n: int) -> None:
        have = self.ts.shape[0]
        if n <= have:
            return
        cap = max(n, 2 * have, 16)
        extra = cap - have
        self.ts = np.vstack([self.ts, np.zeros((extra, self.window), np.int64)])
        for f in self.fields:
            self.values[f] = np.vstack([self.values[f], np.full((extra, self.window), np.nan)])
        self.head = np.concatenate([self.head, np.zeros(extra, np.int64)])
        self.last_ts = np.concatenate([self.last_ts, np.zeros(extra, np.int64)])

    def ingest(self, rows: IntArr, ts: IntArr, values: dict[str, FloatArr]) -> None:
        """Append readings (any order, several per device) in one vectorized step."""
        if rows.size == 0:
            return
        order = np.lexsort((ts, rows))
        rows, ts = rows[order], ts[order]
        # rank of each reading within its device's group → its slot after the head
        starts = np.r_[0, np.flatnonzero(np.diff(rows)) + 1]
        counts = np.diff(np.r_[starts, rows.size])
        rank = np.arange(rows.size) - np.repeat(starts, counts)
        slot = (self.head[rows] + rank) % self.window
        self.ts[rows, slot] = ts
        for f in self.fields:
            self.values[f][rows, slot] = values[f][order]
        uniq = rows[starts]
        self.head[uniq] = (self.head[uniq] + counts) % self.window
        np.maximum.at(self.last_ts, rows, ts)

    def clear_rows(self, rows: IntArr) -> None:
        """Empty these rows, as if their devices had never reported."""
        self.ts[rows] = 0
        for f in self.fields:
            self.values[f][rows] = np.nan
        self.head[rows] = 0
        self.last_ts[rows] = 0

    def latest(self, f: str) -> FloatArr:
        n = self.size
        slot = (self.head[:n] - 1) % self.window
        return self.values[f][np.arange(n), slot]

    def window_mean(self, f: str, now_ms: int, span_ms: int) -> FloatArr:
        """Mean of each device's values with ts in (now - span, now]; NaN if none."""
        n = self.size
        ts = self.ts[:n]
        v = self.values[f][:n]
        inside = (ts > now_ms - span_ms) & (ts <= now_ms) & ~np.isnan(v)
        total = np.where(inside, v, 0.0).sum(axis=1)
        count = inside.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)
