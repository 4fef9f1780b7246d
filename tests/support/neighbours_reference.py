"""The neighbour search as it was before it started from the local density (one cell the
radius wide, a full distance matrix per cell: quadratic in density), and a brute-force
search over every pair: references for the tests and for bench/neighbours.py."""

from __future__ import annotations

import numpy as np

from alert_rules.neighbours import EARTH_RADIUS_KM
from alert_rules.state import BoolArr, FloatArr, IntArr


def _projected(lat: FloatArr, lon: FloatArr, ok: BoolArr) -> tuple[FloatArr, FloatArr]:
    """Local equirectangular km around the placed rows' mean latitude (as the search)."""
    lat0 = float(np.mean(lat[ok]))
    y = np.radians(lat) * EARTH_RADIUS_KM
    return np.radians(lon) * EARTH_RADIUS_KM * np.cos(np.radians(lat0)), y


def one_radius_neighbours(lat: FloatArr, lon: FloatArr, radius_km: float, k: int) -> IntArr:
    """The search as it was: cells one radius wide, each cell against its 3 × 3 block,
    a full distance matrix and a stable argsort per cell (quadratic in density)."""
    n = lat.size
    out = np.full((n, k), -1, np.int64)
    ok = ~(np.isnan(lat) | np.isnan(lon))
    if n == 0 or not ok.any():
        return out
    x, y = _projected(lat, lon, ok)
    idx = np.flatnonzero(ok)
    cx = np.floor(x[idx] / radius_km).astype(np.int64)
    cy = np.floor(y[idx] / radius_km).astype(np.int64)
    cells: dict[tuple[int, int], list[int]] = {}
    for i, a, b in zip(idx.tolist(), cx.tolist(), cy.tolist(), strict=True):
        cells.setdefault((a, b), []).append(i)
    members = {c: np.asarray(m, np.int64) for c, m in cells.items()}
    for (a, b), mine in members.items():
        cand = np.concatenate([members[c] for c in
                               ((a + da, b + db) for da in (-1, 0, 1) for db in (-1, 0, 1))
                               if c in members])
        cand.sort()
        d = np.hypot(x[mine][:, None] - x[cand][None, :], y[mine][:, None] - y[cand][None, :])
        d[mine[:, None] == cand[None, :]] = np.inf
        d[d > radius_km] = np.inf
        take = min(k, cand.size)
        nearest = np.argsort(d, axis=1, kind="stable")[:, :take]
        dist = np.take_along_axis(d, nearest, axis=1)
        out[mine, :take] = np.where(np.isfinite(dist), cand[nearest], -1)
    return out


def brute_force(lat: FloatArr, lon: FloatArr, radius_km: float, k: int) -> IntArr:
    """Every pair, no cells: the definition both searches implement."""
    n = lat.size
    out = np.full((n, k), -1, np.int64)
    ok = ~(np.isnan(lat) | np.isnan(lon))
    if n == 0 or not ok.any():
        return out
    x, y = _projected(lat, lon, ok)
    for i in np.flatnonzero(ok):
        d = np.hypot(x[i] - x, y[i] - y)
        d[~ok] = np.inf
        d[i] = np.inf
        near = [j for j in np.argsort(d, kind="stable") if d[j] <= radius_km][:k]
        out[i, :len(near)] = near
    return out
