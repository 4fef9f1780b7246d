"""The sentences at the top of the report, generated from the numbers (never free text)."""

from __future__ import annotations

import math

from report.compute import HOUR_THRESHOLDS, Report

POLLUTANT_NAMES = {"pm2_5": "PM2.5", "pm10": "PM10"}


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def sentences(r: Report, lang: str) -> list[str]:
    zh = lang == "zh"
    if not r.has_data:
        return ["本期无监测数据：InfluxDB 中没有该时段的小时均值，无法计算空气质量指数。"
                if zh else "No monitoring data for this period: InfluxDB holds no hourly "
                "means for it, so no air quality index can be computed."]
    c = r.county
    out: list[str] = []
    aqi = int(c.aqi)
    if r.period.kind == "daily":
        if zh:
            s = f"全县空气质量为{c.category_zh}，AQI为{aqi}"
            s += (f"，首要污染物{POLLUTANT_NAMES[c.primary]}" if c.primary else "，无首要污染物")
            s += f"；PM2.5日均浓度{_fmt(c.pm2_5)}微克/立方米。"
        else:
            s = f"County air quality was {c.category_en.lower()}, AQI {aqi}"
            s += (f", primary pollutant {POLLUTANT_NAMES[c.primary]}" if c.primary
                  else ", no primary pollutant")
            s += f"; daily mean PM2.5 {_fmt(c.pm2_5)} µg/m³."
        out.append(s)
    else:
        valid = [a for _, a in r.days if a.has_data]
        good = sum(1 for a in valid if a.aqi <= 100)
        if zh:
            out.append(f"本月有数据{len(valid)}天，"
                       f"其中优良天数{good}天（{_pct(good, len(valid))}）；"
                       f"PM2.5月均浓度{_fmt(c.pm2_5)}微克/立方米。")
        else:
            out.append(f"{len(valid)} days with data this month, {good} of them good or "
                       f"moderate ({_pct(good, len(valid))}); monthly mean PM2.5 "
                       f"{_fmt(c.pm2_5)} µg/m³.")
    towns = [t for t in r.townships if not math.isnan(t.pm2_5)]
    if towns:
        worst, best = towns[0], towns[-1]
        if zh:
            s = (f"{worst.township}PM2.5最高（{_fmt(worst.pm2_5)}），"
                 f"{best.township}最低（{_fmt(best.pm2_5)}）")
        else:
            s = (f"Highest PM2.5 in {worst.township} ({_fmt(worst.pm2_5)}), lowest in "
                 f"{best.township} ({_fmt(best.pm2_5)})")
        hi = HOUR_THRESHOLDS[-1]
        over = [t for t in towns if t.hours_over[hi]]
        if over:
            t = max(over, key=lambda t: t.hours_over[hi])
            s += (f"；{len(over)}个乡镇出现小时浓度超过{hi:.0f}的时段，"
                  f"{t.township}最长（{t.hours_over[hi]}小时）。"
                  if zh else f"; {len(over)} township(s) had hours above {hi:.0f} µg/m³, "
                  f"longest in {t.township} ({t.hours_over[hi]} h).")
        else:
            s += "。" if zh else "."
        out.append(s)
    if r.alerts is not None:
        a = r.alerts
        out.append(f"告警新增{a.opened}条，已处置{a.handled}条，"
                   f"仍未关闭{a.still_open}条。" if zh else
                   f"Alerts: {a.opened} opened, {a.handled} handled, {a.still_open} still open.")
    out.append(f"数据完整率{_pct_f(r.completeness)}，{len(r.issues)}台设备离线、"
               "缺数或有质量标记。" if zh
               else f"Data completeness {_pct_f(r.completeness)}; {len(r.issues)} device(s) "
               "offline, missing data or flagged.")
    return out


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:.0f}%" if d else "—"


def _pct_f(x: float) -> str:
    return f"{100 * x:.1f}%"
