"""US EPA NowCast for hourly PM, vectorized over devices.

Source: US EPA / AirNow, "Technical Assistance Document for the Reporting of Daily Air
Quality" (EPA-454/B-24-002, 2024), NowCast for PM: take the 12 most recent hourly means
c1 (newest) … c12; weight factor w = c_min / c_max over the available hours, at least
0.5; NowCast = Σ w^(i-1)·c_i / Σ w^(i-1) over available hours. Undefined unless at least
two of the three most recent hours are valid. PM2.5 NowCast is truncated to 0.1 µg/m³.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArr = npt.NDArray[np.float64]


def nowcast(hours: npt.ArrayLike, truncate: float = 0.1) -> FloatArr:
    """NowCast per device from (12, devices) hourly means, newest first (NaN = missing).

    A 1-D input of 12 values is one device. Returns NaN where NowCast is undefined.
    """
    c = np.asarray(hours, np.float64)
    one = c.ndim == 1
    if one:
        c = c[:, None]
    if c.shape[0] != 12:
        raise ValueError(f"NowCast needs 12 hourly values, got {c.shape[0]}")
    ok = ~np.isnan(c)
    enough = ok[:3].sum(axis=0) >= 2
    cmin = np.where(ok, c, np.inf).min(axis=0)
    cmax = np.where(ok, c, -np.inf).max(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(cmax > 0, cmin / cmax, 1.0)
    w = np.maximum(w, 0.5)
    powers = w[None, :] ** np.arange(12, dtype=np.float64)[:, None]
    weights = np.where(ok, powers, 0.0)
    value = (weights * np.where(ok, c, 0.0)).sum(axis=0) / np.maximum(weights.sum(axis=0), 1e-300)
    if truncate:
        value = np.floor(np.round(value / truncate, 6)) * truncate
    out = np.where(enough, np.round(value, 6), np.nan)
    return out[:1] if one else out

