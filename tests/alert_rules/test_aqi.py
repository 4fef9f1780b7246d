"""AQI under HJ 633-2026, HJ 633-2012 and US EPA 2024, and the EPA NowCast."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alert_rules import aqi
from alert_rules.nowcast import nowcast

HJ26_PM25 = [0, 35, 60, 115, 150, 250, 350, 500]
HJ26_PM10 = [0, 50, 120, 250, 350, 420, 500, 600]
INDEX = [0, 50, 100, 150, 200, 300, 400, 500]


@pytest.mark.parametrize(("pollutant", "conc", "want"), [
    *(("pm2_5", c, i) for c, i in zip(HJ26_PM25, INDEX, strict=True)),
    *(("pm10", c, i) for c, i in zip(HJ26_PM10, INDEX, strict=True)),
])
def test_hj633_2026_table_3_breakpoints(pollutant: str, conc: float, want: int) -> None:
    assert aqi.get("hj633-2026").iaqi(pollutant, [conc])[0] == want


@pytest.mark.parametrize(("pollutant", "conc", "used", "want"), [
    # §4.2.2: whole µg/m³ by GB/T 8170 (a lone trailing 5 goes to the even neighbour),
    # then §4.2.6: the index rounded up
    ("pm2_5", 35.1, 35, 50), ("pm2_5", 34.5, 34, 49), ("pm2_5", 35.5, 36, 52),
    ("pm2_5", 36.5, 36, 52), ("pm2_5", 34.51, 35, 50), ("pm2_5", 60.4, 60, 100),
    ("pm2_5", 60.5, 60, 100), ("pm2_5", 61.5, 62, 102), ("pm2_5", 114.5, 114, 150),
    ("pm2_5", 115.5, 116, 152), ("pm2_5", 116.5, 116, 152), ("pm2_5", 150.4, 150, 200),
    ("pm2_5", 150.5, 150, 200), ("pm2_5", 151.5, 152, 202), ("pm2_5", 0.5, 0, 0),
    ("pm2_5", 1.5, 2, 3), ("pm2_5", 0.4999999999, 0, 0),
    # float noise is not a digit: a mean that is 34.5 to the standard stays 34.5
    ("pm2_5", (34.4 + 34.6) / 2, 34, 49),
    ("pm10", 120.5, 120, 100), ("pm10", 121.5, 122, 101), ("pm10", 50.5, 50, 50),
    ("pm10", 351.0, 351, 202), ("pm10", 700, 700, 500),
])
def test_hj633_2026_rounds_the_concentration_then_the_index(
        pollutant: str, conc: float, used: float, want: int) -> None:
    std = aqi.get("hj633-2026")
    assert std.concentration(pollutant, [conc])[0] == used
    assert std.iaqi(pollutant, [conc])[0] == want


@pytest.mark.parametrize(("standard", "conc", "want"), [
    # HJ 633-2012: no rounding of the concentration, the index rounded up
    ("hj633-2012", 35.1, 51), ("hj633-2012", 75, 100), ("hj633-2012", 76, 102),
    ("hj633-2012", 60, 82), ("hj633-2012", 34.5, 50),
    # EPA 2024: truncate to 0.1 µg/m³, then round the index half up
    ("us-epa-2024", 9.0, 50), ("us-epa-2024", 9.1, 51), ("us-epa-2024", 12.09, 56),
    ("us-epa-2024", 35.4, 100), ("us-epa-2024", 35.49, 100), ("us-epa-2024", 35.5, 101),
    ("us-epa-2024", 55.4, 150), ("us-epa-2024", 125.5, 201), ("us-epa-2024", 225.5, 301),
    ("us-epa-2024", 325.4, 500),
])
def test_other_standards_keep_their_own_rounding(standard: str, conc: float, want: int) -> None:
    assert aqi.get(standard).iaqi("pm2_5", [conc])[0] == want


def test_pm10_and_vectorized_with_bad_values() -> None:
    std = aqi.get("hj633-2026")
    got = std.iaqi("pm10", np.array([50.0, 150.0, np.nan, -1.0, 351.0]))
    assert got[:2].tolist() == [50.0, 112.0]  # 100 + 50/130 × 30 = 111.5 → 112
    assert math.isnan(got[2]) and math.isnan(got[3])
    assert got[4] == 202  # 200 + 100/70 × 1 = 201.4 → rounds up
    assert aqi.get("us-epa-2024").iaqi("pm10", [154.9])[0] == 100  # truncated to 154
    assert aqi.get("hj633-2012").iaqi("pm10", [150.0])[0] == 100


def test_aqi_is_the_largest_sub_index() -> None:
    std = aqi.get("hj633-2026")
    got = std.aqi({"pm2_5": [35.1, np.nan, np.nan], "pm10": [200.0, 50.0, np.nan]})
    assert got[0] == 131 and got[1] == 50 and math.isnan(got[2])


@given(st.integers(-10**9, 10**9))
def test_round_half_even_matches_gb_t_8170_at_every_half(k: int) -> None:
    # Python's round() is round-half-even on exact values: k + 0.5 is exact in binary.
    x = k + 0.5
    assert aqi.round_half_even(np.array([x]))[0] == round(x)
    assert aqi.round_half_even(np.array([k + 0.25]))[0] == k
    assert aqi.round_half_even(np.array([k + 0.75]))[0] == k + 1


@given(st.sampled_from(sorted(aqi.standards())), st.sampled_from(["pm2_5", "pm10"]),
       st.floats(0, 800, allow_nan=False), st.floats(0, 800, allow_nan=False))
def test_iaqi_is_monotone_and_its_category_matches_the_breakpoint_table(
        standard: str, pollutant: str, a: float, b: float) -> None:
    std = aqi.get(standard)
    lo, hi = sorted((a, b))
    i_lo, i_hi = std.iaqi(pollutant, [lo, hi])
    assert i_lo <= i_hi
    # The category is the one whose upper index ends the segment holding the concentration
    # the standard uses (the first segment with c <= C_hi; above the table, the worst).
    c = float(std.concentration(pollutant, [hi])[0])
    seg = std.segments[pollutant]
    rows = [r for r in seg if c <= r[1]]
    top = float(rows[0][3]) if rows else float(seg[-1][3])
    want = next(cat for cat in std.categories if top <= cat.max_aqi)
    assert std.category(float(i_hi)) == want, (c, i_hi)


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


def test_standards_are_data_with_dates_sources_and_rounding() -> None:
    for std in aqi.standards().values():
        assert std.effective_from[:2] == "20" and std.source and std.realtime_averaging
        assert std.index_rounding in aqi.INDEX_MODES
    assert aqi.get().id == "hj633-2026"
    text = aqi.DATA_FILE.read_text(encoding="utf-8")
    # HJ 633-2026 has no transition table (the 2031 step is GB 3095-2026's limit)
    assert "transition" not in text and "2031" not in text
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
