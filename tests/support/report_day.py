"""A simulated county day for the report: readings encoded by the collector's own line
encoder (`collector.line_protocol`) and hourly aggregates by its own `HourlyAggregates`,
written to a real InfluxDB over `/write` (what the collector's v1 sink does).

Deterministic: the value of every reading is a function of (device, time), so tests and the
benchmark can rebuild the same day.
"""

from __future__ import annotations

import datetime as dt
import gzip
import math
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from airgrid.wire import Reading
from collector.aggregates import HourlyAggregates
from collector.line_protocol import READINGS, fields_of, tag_set
from report.period import TZ


@dataclass(frozen=True)
class SimDevice:
    device: str
    township: str
    site: str
    grid: str


def county(townships: Iterable[str], per_township: int) -> list[SimDevice]:
    out = []
    for t_i, town in enumerate(townships):
        for k in range(per_township):
            out.append(SimDevice(f"d{t_i:02d}{k:03d}", town, f"{town}站{k + 1}",
                                 f"g{t_i}-{k % 3}"))
    return out


def pm25(dev: SimDevice, ts_ms: int, episode: set[str], base: float = 40.0) -> float:
    """A daily cycle around `base`; in `episode` townships 14:00–20:00 local rise to ~180."""
    local = dt.datetime.fromtimestamp(ts_ms / 1000, TZ)
    h = local.hour + local.minute / 60
    v = base + 15 * math.sin((h - 6) / 24 * 2 * math.pi) + (hash(dev.device) % 7)
    if dev.township in episode and 14 <= h < 20:
        v += 140
    return round(v + (ts_ms // 60_000 % 5) * 0.7, 1)


def readings(dev: SimDevice, day: dt.date, every_s: int, episode: set[str],
             base: float = 40.0, skip_hours: Iterable[int] = (),
             flagged_hours: Iterable[int] = ()) -> Iterator[Reading]:
    start = int(dt.datetime.combine(day, dt.time(), TZ).timestamp() * 1000)
    skip, flag = set(skip_hours), set(flagged_hours)
    for i, ts in enumerate(range(start, start + 86_400_000, every_s * 1000)):
        hour = (ts - start) // 3_600_000
        if hour in skip:
            continue
        v = pm25(dev, ts, episode, base)
        yield Reading(seq=i + 1, ts=ts, sensor="pms5003", pm1_0=round(v * 0.7, 1), pm2_5=v,
                      pm10=round(v * 1.4, 1), flags=("stuck",) if hour in flag else ())


def lines_for(dev: SimDevice, rs: list[Reading], agg: HourlyAggregates) -> list[str]:
    tags = tag_set({"device": dev.device, "township": dev.township, "site": dev.site,
                    "grid": dev.grid})
    head = f"{READINGS}{tags},sensor=pms5003"
    agg.add(dev.device, [r.ts for r in rs], [[r.pm2_5 for r in rs], [r.pm10 for r in rs]])
    return [f"{head} {fields_of(r)} {r.ts}" for r in rs]


def write(url: str, db: str, lines: list[str], chunk: int = 20_000) -> None:
    for i in range(0, len(lines), chunk):
        body = gzip.compress("\n".join(lines[i:i + chunk]).encode(), 1)
        req = urllib.request.Request(f"{url}/write?db={db}&precision=ms", data=body,
                                     headers={"Content-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status == 204, resp.status


def write_day(url: str, db: str, devices: list[SimDevice], day: dt.date, every_s: int,
              episode: Iterable[str] = (), base: float = 40.0,
              skip: dict[str, Iterable[int]] | None = None,
              flagged: dict[str, Iterable[int]] | None = None) -> None:
    """One day of readings and their hourly aggregates for every device."""
    agg = HourlyAggregates()
    lines: list[str] = []
    tags_of = {}
    for dev in devices:
        rs = list(readings(dev, day, every_s, set(episode), base, (skip or {}).get(dev.device, ()),
                           (flagged or {}).get(dev.device, ())))
        lines += lines_for(dev, rs, agg)
        tags_of[dev.device] = tag_set({"device": dev.device, "township": dev.township,
                                       "site": dev.site, "grid": dev.grid})
    lines += agg.lines(tags_of)
    write(url, db, lines)
