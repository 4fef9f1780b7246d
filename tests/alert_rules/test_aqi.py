"""AQI under HJ 633-2026, HJ 633-2012 and US EPA 2024, and the EPA NowCast."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alert_rules import aqi
from alert_rules.nowcast import nowcast


@pytest.mark.parametrize(("standard", "conc", "want"), [
    # HJ 633-2026 transition reading: 60 µg/m³ is IAQI 100; IAQI rounds up
    ("hj633-2026", 0, 0), ("hj633-2026", 35, 50), ("hj633-2026", 35.1, 51),
    ("hj633-2026", 60, 100), ("hj633-2026", 75, 114), ("hj633-2026", 115, 150),
    ("hj633-2026", 150, 200), ("hj633-2026", 150.1, 201), ("hj633-2026", 250, 300),
    ("hj633-2026", 350, 400), ("hj633-2026", 500, 500), ("hj633-2026", 800, 500),
    ("hj633-2012", 75, 100), ("hj633-2012", 76, 102), ("hj633-2012", 60, 82),
    # EPA 2024: truncate to 0.1 µg/m³, then round the index
    ("us-epa-2024", 9.0, 50), ("us-epa-2024", 9.1, 51), ("us-epa-2024", 12.09, 56),
    ("us-epa-2024", 35.4, 100), ("us-epa-2024", 35.49, 100), ("us-epa-2024", 35.5, 101),
    ("us-epa-2024", 55.4, 150), ("us-epa-2024", 125.5, 201), ("us-epa-2024", 225.5, 301),
    ("us-epa-2024", 325.4, 500),
])
def test_pm25_iaqi(standard: str, conc: float, want: int) -> None:
    assert aqi.get(standard).iaqi("pm2_5", [conc])[0] == want


def test_pm10_and_vectorized_with_bad_values() -> None:
    std = aqi.get("hj633-2026")
    got = std.iaqi("pm10", np.array([50.0, 150.0, np.nan, -1.0, 351.0]))
    assert got[:2].tolist() == [50.0, 100.0]
    assert math.isnan(got[2]) and math.isnan(got[3])
    assert got[4] == 202  # 200 + 100/70 × 1 = 201.4 → rounds up
    assert aqi.get("us-epa-2024").iaqi("pm10", [154.9])[0] == 100  # truncated to 154


@pytest.mark.parametrize(("standard", "index", "en", "zh"), [
    ("hj633-2026", 50, "Excellent", "优"), ("hj633-2026", 51, "Good", "良"),
    ("hj633-2026", 150, "Lightly Polluted", "轻度污染"),
    ("hj633-2026", 200, "Moderately Polluted", "中度污染"),
    ("hj633-2026", 201, "Heavily Polluted", "重度污染"),
    ("hj633-2026", 301, "Severely Polluted", "严重污染"),
    ("us-epa-2024", 101, "Unhealthy for Sensitive Groups", "对敏感人群不健康"),
    ("us-epa-2024", 500, "Hazardous", "危险"),
])
def test_categories(standard: str, index: int, en: str, zh: str) -> None:
    cat = aqi.get(standard).category(index)
    assert cat is not None and (cat.en, cat.zh) == (en, zh)
    assert cat.color.startswith("#") and cat.advice_en and cat.advice_zh


def test_standards_are_data_with_dates_and_sources() -> None:
    for std in aqi.standards().values():
        assert std.effective_from[:2] == "20" and std.source
    assert aqi.get().id == "hj633-2026"
    with pytest.raises(KeyError, match="known"):
        aqi.get("hj633-1999")


def test_nowcast_weights_and_missing_hours() -> None:
    nan = math.nan
    # steady air: NowCast equals the level
    assert nowcast([35.0] * 12)[0] == 35.0
    # newest 40, then 20: w = 0.5 → (40 + 0.5·20) / 1.5 = 33.33 → truncated 33.3
    assert nowcast([40.0, 20.0] + [nan] * 10)[0] == pytest.approx(33.3)
    # w*=c_min/c_max above 0.5 is used as is: (10 + 0.8·8) / 1.8 = 9.11 → 9.1
    assert nowcast([10.0, 8.0] + [nan] * 10)[0] == pytest.approx(9.1)
    # fewer than two of the three newest hours: undefined
    assert math.isnan(nowcast([nan, 20.0, nan] + [30.0] * 9)[0])
    assert not math.isnan(nowcast([nan, 20.0, 25.0] + [nan] * 9)[0])
    # vectorized: (12, devices)
    cols = np.array([[35.0] * 12, [nan] * 12]).T
    out = nowcast(cols)
    assert out[0] == 35.0 and math.isnan(out[1])
    with pytest.raises(ValueError, match="12 hourly"):
        nowcast([1.0, 2.0])
