"""Texts for people, in Chinese (default) and English.

Rule, device name, township, value, AQI category and health advice from the standard
(HJ 633 categories and advice from `alert_rules/aqi_standards.json`), time in China
Standard Time, and how to acknowledge.
"""

from __future__ import annotations

import datetime as dt
import math

from alert_rules import aqi
from collector.alerting.contacts import ContactDirectory
from collector.alerting.model import Alert

CST = dt.timezone(dt.timedelta(hours=8), "CST")  # China Standard Time, no DST

TEXTS = {
    "zh": {
        "firing": "【空气质量告警】{place}{name}：{rule} {value}，{category}。{advice}时间 {time}。"
                  "{late}请回复“收到 {id}”确认。",
        "late": "补传数据：读数时间 {reading_time}，迟到 {delay}。",
        "group": "【空气质量告警】{place}{n}处超标：{items}。时间 {time}。请回复“收到 编号”确认"
                 "（编号：{ids}）。",
        "item": "{name} {value}（#{id}）{late}",
        "resolved": "【告警解除】{place}{name}：{rule} 已恢复至 {value}。告警 #{id}。时间 {time}。",
        "escalated": "【告警升级·第{level}级】{place}{name}：{rule} {value}，{category}，"
                     "已{minutes}分钟无人确认。时间 {time}。请回复“收到 {id}”确认。",
        "acknowledged": "告警 #{id} 已由 {by} 确认（{time}）。",
        "unit": "µg/m³",
        "maintenance": "【设备检修】{place}{summary}。时间 {time}。请回复“收到 {id}”确认。",
    },
    "en": {
        "firing": "[Air quality alert] {place}{name}: {rule} {value}, {category}. {advice} "
                  "Time {time}. {late}Reply \"ACK {id}\" to acknowledge.",
        "late": "Late data: read at {reading_time}, {delay} late. ",
        "group": "[Air quality alert] {place}{n} sites over the limit: {items}. Time {time}. "
                 "Reply \"ACK <no.>\" to acknowledge (nos. {ids}).",
        "item": "{name} {value} (#{id}){late}",
        "resolved": "[Alert cleared] {place}{name}: {rule} back to {value}. Alert #{id}. "
                    "Time {time}.",
        "escalated": "[Alert escalated, level {level}] {place}{name}: {rule} {value}, {category},"
                     " not acknowledged for {minutes} min. Time {time}. Reply \"ACK {id}\".",
        "acknowledged": "Alert #{id} acknowledged by {by} ({time}).",
        "unit": "µg/m³",
        "maintenance": "[Maintenance] {place}{summary}. Time {time}. Reply \"ACK {id}\".",
    },
}
RULE_NAMES = {"zh": {"pm2_5": "PM2.5"}, "en": {"pm2_5": "PM2.5"}}


def pollutant(alert: Alert) -> str | None:
    """The pollutant an alert's value measures: label `pollutant`, else from the rule name."""
    p = alert.labels.get("pollutant")
    if p:
        return p
    r = alert.rule.lower()
    if "pm25" in r or "pm2_5" in r:
        return "pm2_5"
    if "pm10" in r:
        return "pm10"
    return None


class Templates:
    def __init__(self, language: str, contacts: ContactDirectory,
                 standard: str = aqi.DEFAULT_STANDARD) -> None:
        self.lang = language
        self.t = TEXTS[language]
        self.contacts = contacts
        self.standard = aqi.get(standard)

    def _fields(self, a: Alert, at_ms: int) -> dict[str, object]:
        c = self.contacts.for_device(a.subject)
        place = ""
        if c is not None:
            sep = "" if self.lang == "zh" else " "
            place = sep.join(x for x in (c.township, c.grid) if x)
            place = f"{place}{'·' if self.lang == 'zh' else ', '}" if place else ""
        p = pollutant(a)
        value = f"{a.value:.1f}" + (f" {self.t['unit']}" if p else "")
        category = advice = ""
        if p in ("pm2_5", "pm10") and not math.isnan(a.value):
            # The indicative sub-index of the alert's value (a window mean, not a 24-h mean).
            cat = self.standard.category(float(self.standard.iaqi(p, [a.value])[0]))
            if cat is not None:
                category = cat.zh if self.lang == "zh" else cat.en.lower()
                advice = (cat.advice_zh if self.lang == "zh" else cat.advice_en)
        when = dt.datetime.fromtimestamp(at_ms / 1000, CST).strftime("%m-%d %H:%M")
        late = ""
        if a.late_ms > 0:  # raised on a backlog: say when the readings were taken
            read = dt.datetime.fromtimestamp(a.started_ms / 1000, CST).strftime("%H:%M:%S")
            late = self.t["late"].format(reading_time=read, delay=self._delay(a.late_ms))
        return {"place": place, "name": c.name if c else a.subject, "id": a.id,
                "rule": "PM2.5" if p == "pm2_5" else ("PM10" if p == "pm10" else a.rule),
                "value": value, "category": category or a.severity, "advice": advice,
                "time": when, "level": a.level, "by": a.acked_by or "", "late": late}

    def _delay(self, ms: int) -> str:
        s = ms // 1000
        if self.lang == "zh":
            return f"{s // 60}分{s % 60}秒" if s >= 60 else f"{s}秒"
        return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"

    def alert(self, kind: str, a: Alert, at_ms: int, minutes: int = 0) -> str:
        f = self._fields(a, at_ms)
        summary = a.annotations.get(f"summary_{self.lang}", "")
        if kind == "firing" and a.labels.get("audience") == "maintenance" and summary:
            # a sensor fault: the technician needs the rule's evidence, not AQI advice
            return self.t["maintenance"].format(summary=summary, **f)
        return self.t[kind].format(minutes=minutes, **f)

    def group(self, firing: list[Alert], resolved: list[Alert], at_ms: int) -> str:
        parts = []
        if len(firing) == 1:
            parts.append(self.alert("firing", firing[0], at_ms))
        elif firing:
            fields = [self._fields(a, at_ms) for a in firing]
            sep = "；" if self.lang == "zh" else "; "
            items = sep.join(self.t["item"].format(**f) for f in fields)
            ids = "、".join(str(a.id) for a in firing) if self.lang == "zh" else \
                ", ".join(str(a.id) for a in firing)
            parts.append(self.t["group"].format(place=fields[0]["place"], n=len(firing),
                                                items=items, ids=ids, time=fields[0]["time"]))
        parts.extend(self.alert("resolved", a, at_ms) for a in resolved)
        return ("" if self.lang == "zh" else " ").join(parts)
