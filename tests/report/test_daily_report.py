"""The daily report from a real InfluxDB after a simulated day with a pollution episode.

The day is written with the collector's own encoders (`collector.line_protocol` for the
readings, `collector.aggregates.HourlyAggregates` for the hourly aggregates) into the
shared InfluxDB 1.x; the alert store is filled by the collector's `AlertManager`. The
report reads the aggregates; the expected numbers are computed here from the raw
`readings` with InfluxQL, so a wrong aggregate, a wrong day boundary or a wrong mean
would show. The PDF is checked through poppler (`pdftotext`, `pdffonts`, `pdftoppm`).
A day without data is tested in test_delivery.py (the delivered report says so).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from alert_rules import aqi
from collector.alerting.channels.notifier import Address
from collector.alerting.manager import AlertManager
from collector.alerting.principals import Principal
from collector.alerting.store import Store
from orchestration.services import InfluxDB
from report import cli
from report.period import HOUR_MS, TZ, day
from tests.support import alerting
from tests.support import report_day as rd

DAY = dt.date(2026, 11, 25)
TOWNS = ["城关镇", "河口镇", "东岭乡"]
EPISODE = {"河口镇"}
ADDRESSES: dict[str, Address] = {"bus": "app"}


@dataclass
class Stack:
    influx: InfluxDB
    db: str
    config: Path
    tmp: Path

    def query(self, q: str) -> list[dict[str, object]]:
        res = self.influx.query(q, self.db)
        return list(res["results"][0].get("series", []))  # type: ignore[index]


def _local_ms(h: int, m: int = 0, d: dt.date = DAY) -> int:
    return int(dt.datetime.combine(d, dt.time(h, m), TZ).timestamp() * 1000)


def _alerts(path: Path, tmp: Path) -> None:
    """Three alerts in 河口镇's episode: two acknowledged (after 4 and 10 min) and handled
    (resolved at 20:05), one still open at the day's end; one from the day before, handled
    before the day began (must not count)."""
    cfg = alerting.config(tmp, state_db=str(path))
    m = AlertManager(cfg, Store(cfg.state_db), cfg.contacts, ADDRESSES)
    labels = {"grid": "河口一网格", "township": "河口镇"}
    m.handle([alerting.tr("d01000", "firing", 160, _local_ms(10, 0, DAY - dt.timedelta(1)),
                          **labels)], _local_ms(10, 0, DAY - dt.timedelta(1)))
    m.handle([alerting.tr("d01000", "resolved", 60, _local_ms(11, 0, DAY - dt.timedelta(1)),
                          **labels)], _local_ms(11, 0, DAY - dt.timedelta(1)))
    opened = [("d01001", 14, 5), ("d01002", 14, 10), ("d01000", 15, 0)]
    for dev, h, mi in opened:
        m.handle([alerting.tr(dev, "firing", 180, _local_ms(h, mi), **labels)], _local_ms(h, mi))
    ids = {a.subject: a.id for a in m.lifecycle.by_id.values() if a.state == "firing"}
    officer = Principal("赵镇长", "t" * 16, alerting.OFFICER)  # 河口镇's officer may ack
    m.acknowledge(ids["d01001"], officer, _local_ms(14, 9), "sms")
    m.acknowledge(ids["d01002"], officer, _local_ms(14, 20), "sms")
    for dev in ("d01001", "d01002"):
        m.handle([alerting.tr(dev, "resolved", 50, _local_ms(20, 5), **labels)],
                 _local_ms(20, 5))
    m.store.close()


@pytest.fixture(scope="module")
def stack(shared_influxdb: InfluxDB, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("report")
    db = "report_day"
    shared_influxdb.create_database(db)
    devices = rd.county(TOWNS, 3)
    rd.write_day(shared_influxdb.url, db, devices, DAY, 300, EPISODE,
                 skip={"d01000": range(0, 10)}, flagged={"d02001": [3]})
    rd.write_day(shared_influxdb.url, db, devices, DAY - dt.timedelta(days=1), 300, (),
                 base=30)
    store = tmp / "alerting.sqlite"
    _alerts(store, tmp)
    config = tmp / "collector.toml"
    config.write_text(f'[influx]\nurl = "{shared_influxdb.url}"\ndatabase = "{db}"\n'
                      f'[alerting]\nstate_db = "{store}"\n', encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CACHE_DIRECTORY", str(tmp / "cache"))  # the cut fonts stay in tmp
        yield Stack(shared_influxdb, db, config, tmp)


def _render(stack: Stack, *args: str) -> None:
    assert cli.main([*args, "--config", str(stack.config)]) == 0


@pytest.fixture(scope="module")
def pdf(stack: Stack) -> Path:
    out = stack.tmp / "daily.pdf"
    _render(stack, "daily", "--date", DAY.isoformat(), "--out", str(out), "--county", "新县")
    return out


@pytest.fixture(scope="module")
def text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout


# --- the expected numbers, straight from the raw readings --------------------------------

def _device_daily(stack: Stack, d: dt.date) -> dict[str, tuple[str, float, float]]:
    """device → (township, mean of hourly PM2.5 means, of PM10) from `readings`."""
    p = day(d)
    out = {}
    for s in stack.query(
            f"SELECT mean(pm2_5), mean(pm10) FROM readings WHERE time >= {p.start_ms}ms "
            f"AND time < {p.end_ms}ms GROUP BY time(1h), device, township"):
        vals = [v for v in s["values"] if v[1] is not None]  # type: ignore[index]
        tags = s["tags"]  # type: ignore[index]
        out[tags["device"]] = (tags["township"], sum(v[1] for v in vals) / len(vals),
                               sum(v[2] for v in vals) / len(vals))
    return out


def _township_means(daily: dict[str, tuple[str, float, float]]) -> dict[str, float]:
    towns: dict[str, list[float]] = {}
    for town, pm25, _ in daily.values():
        towns.setdefault(town, []).append(pm25)
    return {t: sum(v) / len(v) for t, v in towns.items()}


def _row(text: str, town: str) -> list[str]:
    lines = [ln for ln in text.splitlines() if ln.strip().startswith(town + " ")]
    assert lines, f"no table row for {town} in:\n{text}"
    return lines[0].split()


def test_numbers_in_the_pdf_equal_those_computed_from_influxdb(stack: Stack, text: str) -> None:
    today = _device_daily(stack, DAY)
    yesterday = _township_means(_device_daily(stack, DAY - dt.timedelta(days=1)))
    std = aqi.get()
    for town, mean in _township_means(today).items():
        pm10 = [v[2] for v in today.values() if v[0] == town]
        iaqi = max(std.iaqi("pm2_5", [mean])[0], std.iaqi("pm10", [sum(pm10) / len(pm10)])[0])
        row = _row(text, town)
        assert row[1] == f"{mean:.1f}", row
        assert row[2] == str(int(iaqi)), row
        assert row[4] == f"{mean - yesterday[town]:+.1f}", row
        assert row[5] == "—", row  # no data for the same day last year
    # County: mean of the devices' daily means, AQI = max IAQI, in the summary sentence.
    c25 = sum(v[1] for v in today.values()) / len(today)
    c10 = sum(v[2] for v in today.values()) / len(today)
    county_aqi = int(max(std.iaqi("pm2_5", [c25])[0], std.iaqi("pm10", [c10])[0]))
    cat = std.category(county_aqi)
    assert cat is not None
    assert f"全县空气质量为{cat.zh}，AQI为{county_aqi}" in text
    assert f"PM2.5日均浓度{c25:.1f}微克/立方米" in text


def test_hours_over_thresholds_counted_from_township_hourly_means(stack: Stack,
                                                                  text: str) -> None:
    p = day(DAY)
    for town in TOWNS:
        series = stack.query(
            f"SELECT mean(pm2_5) FROM readings WHERE township = '{town}' AND "
            f"time >= {p.start_ms}ms AND time < {p.end_ms}ms GROUP BY time(1h), device")
        per_hour: dict[int, list[float]] = {}
        for s in series:
            for t, v in s["values"]:  # type: ignore[index]
                if v is not None:
                    per_hour.setdefault(t, []).append(v)
        means = [sum(v) / len(v) for v in per_hour.values()]
        row = _row(text, town)
        assert row[6] == str(sum(m > 75 for m in means)), row
        assert row[7] == str(sum(m > 150 for m in means)), row
    assert _row(text, "河口镇")[7] == "6"  # the episode: 14:00–20:00


def test_chinese_text_is_real_text_in_an_embedded_font(pdf: Path, text: str) -> None:
    for phrase in ("新县空气质量日报", "首要污染物", "乡镇排名", "投诉：暂无投诉数据来源",
                   "数据完整率"):
        assert phrase in text
    assert "\ufffd" not in text
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True,
                           check=True).stdout.splitlines()[2:]
    assert fonts
    for line in fonts:
        # name, type "CID TrueType", encoding, emb, sub, uni
        assert "NotoSansCJKsc" in line and "CID TrueType" in line, line
        assert line.split()[-5:-2] == ["yes", "yes", "yes"], line


def test_pdf_renders_to_png_with_ink_where_the_title_is(pdf: Path, tmp_path: Path) -> None:
    import matplotlib.image

    subprocess.run(["pdftoppm", "-r", "40", "-f", "1", "-l", "1", "-png", str(pdf),
                    str(tmp_path / "p")], check=True, capture_output=True)
    png = next(tmp_path.glob("p*.png"))
    img = matplotlib.image.imread(str(png))
    h, w = img.shape[:2]
    title = img[int(0.03 * h):int(0.06 * h), int(0.06 * w):int(0.5 * w), :3]
    assert (title < 0.5).any(), "no glyphs drawn in the title band"
    # 2 pages: one or two A4 pages, never more
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    assert re.search(r"Pages:\s+2\b", info), info


def test_alert_section_counts_from_the_alert_store(text: str) -> None:
    flat = " ".join(text.split())
    assert "新增 3 条，已确认 2 条，已处置 2 条，仍未关闭 1 条" in flat
    assert "确认用时中位数 7 分钟" in flat  # 4 and 10 minutes
    assert "处置用时中位数 358 分钟" in flat  # 14:05→20:05 and 14:10→20:05: 360, 355
    assert "网格 河口一网格（河口镇）" in flat
    assert "告警新增3条，已处置2条，仍未关闭1条" in flat


def test_devices_missing_hours_or_flagged_are_listed(text: str) -> None:
    flat = " ".join(text.split())
    assert "d01000（河口镇 河口镇站1）缺 10 小时" in flat
    assert "d02001（东岭乡 东岭乡站2）缺 0 小时，质量标记 12 条" in flat
    completeness = 1 - 10 / (9 * 24)
    assert f"小时数据完整率 {100 * completeness:.1f}%" in flat


def test_monthly_in_english_html(stack: Stack) -> None:
    """One render for three things: `monthly`, `--lang en`, `--format html` (from .html)."""
    html = stack.tmp / "month.html"
    _render(stack, "monthly", "--month", f"{DAY:%Y-%m}", "--out", str(html), "--lang", "en")
    body = html.read_text(encoding="utf-8")
    words = re.sub(r"data:image/png;base64,[^\"]+", "", body)
    assert "monthly air quality report" in words and "November 2026" in words
    # both days are 良 or better for the county (the episode is one township's evening)
    assert "2 days with data this month, 2 of them good or moderate (100%)" in words
    assert "Alerts: 4 opened, 3 handled, 1 still open." in words  # the month: both days
    assert "Complaints: no complaint source configured" in words
    assert "NaN" not in words and "nan" not in words
    assert words.count("data:image/png;base64,") == 0 and body.count("data:image/png") == 2


def test_same_day_last_year_and_yesterday_need_no_hourly_rows(stack: Stack) -> None:
    """The comparison periods are read as device daily means computed by InfluxDB; they
    agree with the report's own per-hour computation."""
    from collector.config import load
    from report import source
    from report.build import reader_for
    from report.compute import township_means

    reader = reader_for(load(stack.config))
    p = day(DAY)
    via_influx = source.township_daily_means(reader, p)
    via_hours = township_means(source.hourly(reader, p))
    assert via_influx.keys() == via_hours.keys()
    for town, v in via_hours.items():
        assert math.isclose(via_influx[town], v, rel_tol=1e-9)
    assert (p.end_ms - p.start_ms) == 24 * HOUR_MS


def test_v2_settings_query_the_bucket_through_the_compatibility_endpoint(stack: Stack) -> None:
    """`api = "v2"`: the token goes in `Authorization: Token …` and the bucket is the `db`
    of `/query` (the DBRP mapping). InfluxDB 1.x without auth ignores the header, so the
    same database answers: the v2 settings must give the very same numbers. (A real 2.x
    server is not available here; the token check itself is not exercised.)"""
    from collector.config import from_dict
    from report import source
    from report.build import reader_for

    v1 = from_dict({"influx": {"url": stack.influx.url, "database": stack.db}})
    v2 = from_dict({"influx": {"api": "v2", "url": stack.influx.url, "token": "t0ken",
                               "bucket": stack.db, "database": "not-this-one"}})
    r2 = reader_for(v2)
    assert r2.database == stack.db and r2.token == "t0ken"
    p = day(DAY)
    assert source.township_daily_means(r2, p) == source.township_daily_means(reader_for(v1), p)
    assert source.township_daily_means(r2, p)  # not two empty answers
