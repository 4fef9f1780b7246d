"""Nearest neighbours within a radius, as a padded (devices × k) index matrix.

Built once per registry (not in the tick): devices are binned in cells one radius wide,
so each cell only compares against its 3 × 3 block of cells.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from alert_rules.state import FloatArr, IntArr

EARTH_RADIUS_KM = 6371.0088  # IUGG mean Earth radius


def neighbours(lat: FloatArr, lon: FloatArr, radius_km: float, k: int) -> IntArr:
    """Up to k nearest other devices within radius_km of each; -1 pads. NaN position: none."""
    n = lat.size
    out = np.full((n, k), -1, np.int64)
    ok = ~(np.isnan(lat) | np.isnan(lon))
    if n == 0 or not ok.any():
        return out
    # local equirectangular projection: fine at county scale (tens of km)
    lat0 = float(np.nanmean(lat))
    y = np.radians(lat) * EARTH_RADIUS_KM
    x = np.radians(lon) * EARTH_RADIUS_KM * np.cos(np.radians(lat0))
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
        cand.sort()  # ties in distance go to the lower row: deterministic
        d = np.hypot(x[mine][:, None] - x[cand][None, :], y[mine][:, None] - y[cand][None, :])
        d[mine[:, None] == cand[None, :]] = np.inf
        d[d > radius_km] = np.inf
        take = min(k, cand.size)
        nearest = np.argsort(d, axis=1, kind="stable")[:, :take]
        dist = np.take_along_axis(d, nearest, axis=1)
        out[mine, :take] = np.where(np.isfinite(dist), cand[nearest], -1)
    return out


def sorting_network(k: int) -> list[tuple[int, int]]:
    """Compare-exchange pairs that sort k values (Batcher's odd-even merge sort, pairs
    past k dropped: a network for 2^m values sorts any prefix of it padded with +inf)."""
    size = 1
    while size < k:
        size *= 2
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < size:
        q = p
        while q >= 1:
            for j in range(q % p, size - q, 2 * q):
                for i in range(min(q, size - j - q)):
                    a, b = i + j, i + j + q
                    if a // (2 * p) == b // (2 * p) and b < k:
                        pairs.append((a, b))
            q //= 2
        p *= 2
    return pairs


def column_median(values: npt.NDArray[np.float64]) -> tuple[FloatArr, IntArr]:
    """(median of each column ignoring NaN — NaN if it has none —, valid values per
    column) of a (k × devices) array. A sorting network of element-wise min/max over k
    rows of the whole fleet instead of `np.sort` of each device's k values: the same
    order statistics, without a per-device sort (about 5× faster at k = 8)."""
    k, n = values.shape
    if k == 0:
        return np.full(n, np.nan), np.zeros(n, np.int64)
    missing = np.isnan(values)
    c = np.full(n, k, np.int64)
    for j in range(k):
        c -= missing[j]
    s = np.where(missing, np.inf, values)  # NaN sorts last
    tmp = np.empty(n)
    for a, b in sorting_network(k):
        np.minimum(s[a], s[b], out=tmp)
        np.maximum(s[a], s[b], out=s[b])
        s[a] = tmp
    flat, col = s.ravel(), np.arange(n)
    lo = flat[np.maximum((c - 1) // 2, 0) * n + col]
    hi = np.where(c % 2 == 1, lo, flat[np.minimum(c // 2, k - 1) * n + col])
    return np.where(c > 0, (lo + hi) / 2, np.nan), c


def row_median(values: npt.NDArray[np.float64]) -> FloatArr:
    """Median of each row ignoring NaN (NaN if the row has none) of a (devices × k) array:
    `column_median` of its transpose."""
    return column_median(np.ascontiguousarray(values.T))[0]
