"""Every label the report prints, in Chinese and English."""

from __future__ import annotations

LABELS: dict[str, dict[str, str]] = {
    "daily_title": {"zh": "{county}空气质量日报", "en": "{county} daily air quality report"},
    "monthly_title": {"zh": "{county}空气质量月报", "en": "{county} monthly air quality report"},
    "county": {"zh": "全县", "en": "County"},
    "aqi": {"zh": "空气质量指数 AQI", "en": "Air quality index (AQI)"},
    "primary": {"zh": "首要污染物", "en": "Primary pollutant"},
    "none": {"zh": "无", "en": "none"},
    "no_data": {"zh": "无数据", "en": "no data"},
    "standard": {"zh": "标准", "en": "Standard"},
    "hourly_curve": {"zh": "逐小时 AQI（1小时均值）", "en": "Hourly AQI (1-hour means)"},
    "daily_curve": {"zh": "逐日 AQI", "en": "Daily AQI"},
    "calendar": {"zh": "每日空气质量日历", "en": "Daily AQI calendar"},
    "hour": {"zh": "时", "en": "hour"},
    "ranking": {"zh": "乡镇排名（PM2.5 均值由高到低）",
                "en": "Townships (mean PM2.5, worst first)"},
    "col_town": {"zh": "乡镇", "en": "Township"},
    "col_pm25": {"zh": "PM2.5", "en": "PM2.5"},
    "col_aqi": {"zh": "AQI", "en": "AQI"},
    "col_cat": {"zh": "类别", "en": "Category"},
    "col_prev_daily": {"zh": "较昨日", "en": "vs yesterday"},
    "col_prev_monthly": {"zh": "较上月", "en": "vs last month"},
    "col_year": {"zh": "较去年同期", "en": "vs last year"},
    "col_over": {"zh": ">{t}小时", "en": "h >{t}"},
    "col_complete": {"zh": "完整率", "en": "Complete"},
    "hours_over": {"zh": "PM2.5 小时浓度超标时数（µg/m³）", "en": "Hours of PM2.5 above (µg/m³)"},
    "worst_sites": {"zh": "PM2.5 最高的站点（逐小时）", "en": "Worst sites (hourly PM2.5)"},
    "alerts": {"zh": "告警与投诉", "en": "Alerts and complaints"},
    "alerts_none": {"zh": "未配置告警库（告警功能未启用）", "en": "no alert store configured"},
    "alerts_line": {"zh": "新增 {opened} 条，已确认 {acked} 条，"
                          "已处置 {handled} 条，仍未关闭 {open} 条",
                    "en": "{opened} opened, {acked} acknowledged, {handled} handled, "
                          "{open} still open"},
    "alerts_median": {"zh": "确认用时中位数 {ack}，处置用时中位数 {handle}",
                      "en": "median time to acknowledge {ack}, to handle {handle}"},
    "slowest": {"zh": "用时最长：", "en": "Slowest:"},
    "slow_item": {"zh": "网格 {grid}（{town}）#{id} {subject} {minutes}{open}",
                  "en": "grid {grid} ({town}) #{id} {subject} {minutes}{open}"},
    "still_open": {"zh": "（未关闭）", "en": " (open)"},
    "complaints": {"zh": "投诉：暂无投诉数据来源",
                   "en": "Complaints: no complaint source configured"},
    "completeness": {"zh": "数据完整率与异常设备", "en": "Data completeness and device issues"},
    "completeness_line": {"zh": "全县 {devices} 台设备，小时数据完整率 {pct}",
                          "en": "{devices} devices, hourly data completeness {pct}"},
    "issue_item": {"zh": "{device}（{town} {site}）缺 {missing} 小时{flag}{off}",
                   "en": "{device} ({town} {site}): {missing} h missing{flag}{off}"},
    "flagged": {"zh": "，质量标记 {n} 条", "en": ", {n} flagged readings"},
    "offline": {"zh": "，当前离线", "en": ", offline now"},
    "no_issues": {"zh": "无离线或异常设备", "en": "no device offline, missing data or flagged"},
    "more": {"zh": "……另有 {n} 项", "en": "… and {n} more"},
    "minutes": {"zh": "{m:.0f} 分钟", "en": "{m:.0f} min"},
    "dash": {"zh": "—", "en": "—"},
    "generated": {"zh": "数据来源：InfluxDB 小时均值（readings_hourly）；{std}",
                  "en": "Source: InfluxDB hourly means (readings_hourly); {std}"},
    "summary": {"zh": "摘要", "en": "Summary"},
}


def t(key: str, lang: str, **kw: object) -> str:
    text = LABELS[key][lang]
    return text.format(**kw) if kw else text
