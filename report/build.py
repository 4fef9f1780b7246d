"""A report from a collector's config: read InfluxDB and the alert store, compute."""

from __future__ import annotations

from pathlib import Path

from alert_rules import aqi
from collector import config as collector_config
from collector import registry as device_registry
from collector.config import CollectorConfig
from report import alert_stats, source
from report.compute import Report, compute
from report.influx_query import InfluxReader
from report.period import Period


def reader_for(cfg: CollectorConfig) -> InfluxReader:
    """InfluxQL on the collector's InfluxDB: 1.x with basic auth, 2.x/3.x with the token
    on `/query` (the bucket must have a DBRP mapping named like the bucket)."""
    i = cfg.influx
    if i.api == "v2":
        return InfluxReader(i.url, i.bucket or i.database, token=i.token, timeout_s=i.timeout_s)
    return InfluxReader(i.url, i.database, i.username, i.password, timeout_s=i.timeout_s)


def expected_devices(cfg: CollectorConfig) -> list[source.DeviceInfo]:
    """The registry's devices: a registered device that sent nothing is listed as missing."""
    if cfg.registry.file is None:
        return []
    return [source.DeviceInfo(d.id, d.township, d.site, d.grid)
            for d in device_registry.load(cfg.registry.file).values()]


def build(collector_toml: Path, period: Period, standard: str = aqi.DEFAULT_STANDARD) -> Report:
    """Raises ConfigError / RegistryError for a bad config or registry (the collector's
    own loaders: what `check-config` validates), SourceUnavailable for InfluxDB."""
    cfg = collector_config.load(collector_toml)
    reader = reader_for(cfg)
    expected = expected_devices(cfg)
    table = source.hourly(reader, period, expected)
    prev = source.township_daily_means(reader, period.previous())
    year = source.township_daily_means(reader, period.year_before())
    alerts = (alert_stats.read(cfg.alerting.state_db, period.start_ms, period.end_ms)
              if cfg.alerting.enabled else None)
    return compute(table, aqi.get(standard), prev, year,
                   source.flagged_counts(reader, period), source.offline_at_end(reader, period),
                   alerts)


def colors(standard: str) -> ColorOf:
    return ColorOf(aqi.get(standard))


class ColorOf:
    """AQI → its category colour (grey for no data), for bars and calendar cells."""

    def __init__(self, std: aqi.Standard) -> None:
        self.std = std

    def __call__(self, value: float) -> str:
        cat = self.std.category(float(value))
        return "#cccccc" if cat is None else cat.color
