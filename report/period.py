"""The period a report covers: whole days in Beijing time (China Standard Time, UTC+8).

HJ 633-2026 daily values are natural-day (00:00–24:00 local) means. China has no daylight
saving time, so each local hour is exactly one UTC hour and the collector's UTC-hour
aggregates fall into local days without splitting.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Period:
    first: dt.date
    days: int
    kind: str  # "daily" or "monthly"

    @property
    def start_ms(self) -> int:
        return int(dt.datetime.combine(self.first, dt.time(), TZ).timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * DAY_MS

    @property
    def hours(self) -> int:
        return self.days * 24

    def dates(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=i) for i in range(self.days)]

    def label(self, lang: str) -> str:
        if self.kind == "monthly":
            return (f"{self.first.year}年{self.first.month}月" if lang == "zh"
                    else self.first.strftime("%B %Y"))
        d = self.first
        return f"{d.year}年{d.month}月{d.day}日" if lang == "zh" else d.isoformat()

    def previous(self) -> Period:
        if self.kind == "monthly":
            last = self.first - dt.timedelta(days=1)
            return month(last.year, last.month)
        return day(self.first - dt.timedelta(days=1))

    def year_before(self) -> Period:
        if self.kind == "monthly":
            return month(self.first.year - 1, self.first.month)
        f = self.first
        # 29 February has no same day last year: compare with 28 February.
        return day(f.replace(year=f.year - 1, day=min(f.day, 28 if f.month == 2 else f.day)))


def day(d: dt.date) -> Period:
    return Period(d, 1, "daily")


def month(year: int, month_: int) -> Period:
    return Period(dt.date(year, month_, 1), calendar.monthrange(year, month_)[1], "monthly")


def yesterday(now: dt.datetime | None = None) -> dt.date:
    """The day before today in Beijing time (what the 07:00 run reports on)."""
    today = (now or dt.datetime.now(TZ)).astimezone(TZ).date()
    return today - dt.timedelta(days=1)
