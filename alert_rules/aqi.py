"""IAQI / AQI for PM2.5 and PM10 under the standards in aqi_standards.json (vectorized).

Standards are data with an effective date; this module only interprets segments
[C_lo, C_hi, I_lo, I_hi] with the standard's own truncation and rounding rules.
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


@dataclass(frozen=True)
class Standard:
    id: str
    name: str
    effective_from: str
    source: str
    rounding: str  # "ceil" (HJ 633) or "round" (EPA, half up)
    truncate: dict[str, float | None]
    segments: dict[str, npt.NDArray[np.float64]]  # pollutant -> (k, 4)
    categories: tuple[Category, ...]

    def iaqi(self, pollutant: str, conc: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Sub-index per concentration; NaN for missing or negative values.

        Above the top breakpoint the index is capped at the scale's top (500): the
        standards define no index beyond it, but such air is still the worst category.
        """
        c = np.asarray(conc, np.float64)
        step = self.truncate.get(pollutant)
        if step:
            # EPA truncates; a tiny epsilon keeps 35.4 from becoming 35.3 in binary.
            c = np.round(np.floor(c / step + 1e-9) * step, 6)
        seg = self.segments[pollutant]
        lo, hi, ilo, ihi = seg[:, 0], seg[:, 1], seg[:, 2], seg[:, 3]
        # The last segment whose lower bound is <= c (EPA bounds are discontinuous).
        k = np.clip(np.searchsorted(lo, c, side="right") - 1, 0, len(lo) - 1)
        with np.errstate(invalid="ignore"):
            raw = (ihi[k] - ilo[k]) / (hi[k] - lo[k]) * (c - lo[k]) + ilo[k]
            # HJ 633 rounds the sub-index up; EPA rounds half up. round(…, 9) first so
            # that float noise (100.0000000001) does not push an exact edge up a step.
            out = np.ceil(np.round(raw, 9)) if self.rounding == "ceil" else np.floor(raw + 0.5)
            out = np.where(c > hi[-1], ihi[-1], out)
            bad = np.isnan(c) | (c < 0)
        return np.where(bad, np.nan, out)

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
    return Standard(
        id=spec["id"], name=spec["name"], effective_from=spec["effective_from"],
        source=spec["source"], rounding=spec["rounding"], truncate=spec["truncate"],
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
