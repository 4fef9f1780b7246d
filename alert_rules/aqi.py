"""IAQI / AQI for PM2.5 and PM10 under the standards in aqi_standards.json (vectorized).

Standards are data with an effective date; this module only interprets segments
[C_lo, C_hi, I_lo, I_hi] with the standard's own rounding rules: the concentration first
(HJ 633-2026 §4.2.2: whole µg/m³ per GB/T 8170; EPA: truncated), then the index
(HJ 633-2026 §4.2.6: rounded up; EPA: to the nearest integer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

DATA_FILE = Path(__file__).with_name("aqi_standards.json")
DEFAULT_STANDARD = "hj633-2026"


@dataclass(frozen=True)
class Category:
    max_aqi: int
    en: str
    zh: str
    color: str
    advice_en: str
    advice_zh: str


#: Binary float noise is cleared on this grid (µg/m³) before a concentration is rounded:
#: a mean of 34.4 and 34.6 is 34.5 to the standard, not 34.49999999999999.
NOISE_GRID = 1e-6
CONCENTRATION_MODES = ("none", "half_even", "truncate")
INDEX_MODES = ("ceil", "half_up")


@dataclass(frozen=True)
class ConcentrationRounding:
    """What a standard does to a concentration before the formula."""

    mode: str  # "none", "half_even" (GB/T 8170-2008 §3.3) or "truncate" (EPA)
    step: float  # µg/m³; 0 with mode "none"


def clear_noise(c: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Snap to NOISE_GRID, half up. grafana.aqi_bands writes the same operations in
    InfluxQL, so both give the same double for the same input."""
    return np.floor(c / NOISE_GRID + 0.5) * NOISE_GRID


def round_half_even(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """GB/T 8170-2008 §3.3 (四舍六入五成双): below 5 drops, above 5 (or 5 followed by
    non-zero digits) carries, and a trailing 5 alone goes to the even neighbour.

    Written with floor only, as grafana.aqi_bands writes it in InfluxQL (which has no
    CASE): floor(x + 0.5), less 1 when x is exactly half-way and floor(x) is even.
    """
    f = np.floor(x)
    halfway = 1.0 - np.ceil(np.abs(x - f - 0.5))  # 1 exactly at .5, else 0
    odd = f - 2.0 * np.floor(f / 2.0)  # 1 for odd f, 0 for even
    return np.floor(x + 0.5) - halfway * (1.0 - odd)


@dataclass(frozen=True)
class Standard:
    id: str
    name: str
    effective_from: str
    source: str
    index_rounding: str  # "ceil" (HJ 633) or "half_up" (EPA)
    concentration_rounding: dict[str, ConcentrationRounding]
    realtime_averaging: str
    segments: dict[str, npt.NDArray[np.float64]]  # pollutant -> (k, 4)
    categories: tuple[Category, ...]

    def concentration(self, pollutant: str, conc: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The concentration the formula uses, after the standard's own rounding."""
        c = np.asarray(conc, np.float64)
        rule = self.concentration_rounding[pollutant]
        if rule.mode == "half_even":
            return round_half_even(clear_noise(c) / rule.step) * rule.step
        if rule.mode == "truncate":
            # A tiny epsilon keeps 35.4 from becoming 35.3 in binary.
            return np.round(np.floor(c / rule.step + 1e-9) * rule.step, 6)
        return c

    def iaqi(self, pollutant: str, conc: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Sub-index per concentration; NaN for missing or negative values.

        Above the top breakpoint the index is capped at the scale's top (500): the
        standards define no index beyond it, but such air is still the worst category.
        """
        raw_c = np.asarray(conc, np.float64)
        with np.errstate(invalid="ignore"):  # inf - inf in the rounding: NaN, refused below
            c = self.concentration(pollutant, raw_c)
        seg = self.segments[pollutant]
        lo, hi, ilo, ihi = seg[:, 0], seg[:, 1], seg[:, 2], seg[:, 3]
        # The last segment whose lower bound is <= c (EPA bounds are discontinuous).
        k = np.clip(np.searchsorted(lo, c, side="right") - 1, 0, len(lo) - 1)
        with np.errstate(invalid="ignore"):
            raw = (ihi[k] - ilo[k]) / (hi[k] - lo[k]) * (c - lo[k]) + ilo[k]
            # HJ 633 rounds the sub-index up; EPA rounds half up. round(…, 9) first so
            # that float noise (100.0000000001) does not push an exact edge up a step.
            if self.index_rounding == "ceil":
                out = np.ceil(np.round(raw, 9))
            else:
                out = np.floor(raw + 0.5)
            out = np.where(c > hi[-1], ihi[-1], out)
            bad = np.isnan(raw_c) | (raw_c < 0) | np.isinf(raw_c)
        return np.where(bad, np.nan, out)

    def aqi(self, concentrations: dict[str, npt.ArrayLike]) -> npt.NDArray[np.float64]:
        """AQI = the largest sub-index over the given pollutants (NaN where all are
        missing). Sub-indices are integers already, so the AQI is too (HJ 633-2026 §4.2.6)."""
        subs = np.vstack([np.atleast_1d(self.iaqi(p, c)) for p, c in concentrations.items()])
        with np.errstate(invalid="ignore"):
            all_nan = np.all(np.isnan(subs), axis=0)
            out = np.nanmax(np.where(np.isnan(subs), -np.inf, subs), axis=0)
        return np.where(all_nan, np.nan, out)

    def category_index(self, aqi: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Index into `categories` per AQI value (-1 for NaN)."""
        a = np.asarray(aqi, np.float64)
        edges = np.array([c.max_aqi for c in self.categories], np.float64)
        idx = np.searchsorted(edges, a, side="left")
        return np.where(np.isnan(a), -1, np.minimum(idx, len(edges) - 1)).astype(np.int64)

    def category(self, aqi: float) -> Category | None:
        i = int(self.category_index([aqi])[0])
        return None if i < 0 else self.categories[i]


def _build(spec: dict[str, Any], sets: dict[str, list[dict[str, Any]]]) -> Standard:
    where = f"{DATA_FILE.name}: standard {spec.get('id')!r}"
    if spec["index_rounding"] not in INDEX_MODES:
        raise ValueError(f"{where}: index_rounding must be one of {INDEX_MODES}")
    rounding = {p: ConcentrationRounding(r["mode"], float(r["step"]))
                for p, r in spec["concentration_rounding"].items()}
    for p, r in rounding.items():
        if r.mode not in CONCENTRATION_MODES or (r.mode != "none" and r.step <= 0):
            raise ValueError(f"{where}: concentration_rounding.{p} must have a mode in "
                             f"{CONCENTRATION_MODES} and a step > 0")
    if set(rounding) != set(spec["pollutants"]):
        raise ValueError(f"{where}: concentration_rounding must name every pollutant")
    return Standard(
        id=spec["id"], name=spec["name"], effective_from=spec["effective_from"],
        source=spec["source"], index_rounding=spec["index_rounding"],
        concentration_rounding=rounding, realtime_averaging=spec["realtime_averaging"],
        segments={p: np.asarray(s, np.float64) for p, s in spec["pollutants"].items()},
        categories=tuple(Category(**c) for c in sets[spec["categories"]]),
    )


@cache
def standards() -> dict[str, Standard]:
    data = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    return {s["id"]: _build(s, data["category_sets"]) for s in data["standards"]}


def get(standard_id: str = DEFAULT_STANDARD) -> Standard:
    try:
        return standards()[standard_id]
    except KeyError:
        known = sorted(standards())
        raise KeyError(f"unknown AQI standard {standard_id!r}; known: {known}") from None
