"""Per-device PM2.5 corrections, each a named formula (the name becomes the `cal` tag).

Low-cost optical sensors over-read in humid air; which correction fits a device is a
local decision, so the registry names the formula and its coefficients per device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: formula name → (required coefficient names, optional coefficient defaults)
FORMULAS: dict[str, tuple[tuple[str, ...], dict[str, float]]] = {
    # y = slope·x + intercept (co-location against a reference monitor).
    "linear": (("slope", "intercept"), {}),
    # y = slope·x + rh_coef·RH + intercept (multilinear humidity correction).
    "linear_rh": (("slope", "rh_coef", "intercept"), {"rh_default_pct": -1.0}),
    # US EPA correction for PurpleAir (PMS5003 CF=1), US-wide: Barkjohn, Gantt & Clements,
    # AMT 14, 4617–4637 (2021), eq. 1: PM2.5 = 0.524·PA_cf1 − 0.0862·RH + 5.75.
    "epa_purpleair_2021": ((), {"rh_default_pct": -1.0}),
    # κ-Köhler hygroscopic growth: Crilley et al., AMT 11, 709–720 (2018), eq. 3:
    # PM_dry = PM / (1 + (κ/1.65) / (−1 + 1/aw)), aw = RH/100.
    "kohler": (("kappa",), {"rh_default_pct": -1.0}),
}


@dataclass(frozen=True)
class Calibration:
    formula: str
    coef: Mapping[str, float]

    def correct(self, pm2_5: float | None, pm2_5_cf1: float | None,
                rh_pct: float | None) -> float | None:
        """Corrected PM2.5 in µg/m³ (never below 0), or None when an input is missing."""
        if rh_pct is None and self.coef.get("rh_default_pct", -1.0) >= 0:
            rh_pct = self.coef["rh_default_pct"]
        return _APPLY[self.formula](self.coef, pm2_5, pm2_5_cf1, rh_pct)


def _clamp(v: float) -> float:
    return round(max(v, 0.0), 2)


def _linear(c: Mapping[str, float], pm: float | None, cf1: float | None,
            rh: float | None) -> float | None:
    return None if pm is None else _clamp(c["slope"] * pm + c["intercept"])


def _linear_rh(c: Mapping[str, float], pm: float | None, cf1: float | None,
               rh: float | None) -> float | None:
    if pm is None or rh is None:
        return None
    return _clamp(c["slope"] * pm + c["rh_coef"] * rh + c["intercept"])


def _epa_pa(c: Mapping[str, float], pm: float | None, cf1: float | None,
            rh: float | None) -> float | None:
    if cf1 is None or rh is None:
        return None
    return _clamp(0.524 * cf1 - 0.0862 * rh + 5.75)


def _kohler(c: Mapping[str, float], pm: float | None, cf1: float | None,
            rh: float | None) -> float | None:
    if pm is None or rh is None:
        return None
    aw = min(rh, 99.0) / 100.0  # the growth term diverges at saturation
    if aw <= 0:
        return _clamp(pm)
    return _clamp(pm / (1.0 + (c["kappa"] / 1.65) / (-1.0 + 1.0 / aw)))


_APPLY: dict[str, Callable[[Mapping[str, float], float | None, float | None, float | None],
                           float | None]] = {
    "linear": _linear, "linear_rh": _linear_rh, "epa_purpleair_2021": _epa_pa,
    "kohler": _kohler,
}


def parse(raw: Any, where: str) -> Calibration:
    """Build from a registry entry; ValueError names `where` and what was expected."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a table with `formula`, got {raw!r}")
    formula = raw.get("formula")
    if formula not in FORMULAS:
        raise ValueError(f"{where}.formula: expected one of {sorted(FORMULAS)}, got {formula!r}")
    required, optional = FORMULAS[formula]
    coef: dict[str, float] = dict(optional)
    for key, value in raw.items():
        if key == "formula":
            continue
        if key not in required and key not in optional:
            raise ValueError(f"{where}.{key}: not a coefficient of {formula} "
                             f"(expected {sorted(required) + sorted(optional)})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}.{key}: expected a number, got {value!r}")
        coef[key] = float(value)
    for key in required:
        if key not in coef:
            raise ValueError(f"{where}.{key}: required by formula {formula}")
    return Calibration(formula, coef)
