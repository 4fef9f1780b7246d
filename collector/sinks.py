"""The explicit registry of storage sinks, chosen by `influx.api` in the config."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from collector.influx_sink import InfluxV1Sink, StorageSink
from collector.influx_v2_sink import InfluxV2Sink

if TYPE_CHECKING:
    from collector.config import CollectorConfig


def _v1(cfg: CollectorConfig) -> StorageSink:
    return InfluxV1Sink(cfg.influx.url, cfg.influx.database, cfg.influx.username,
                        cfg.influx.password, timeout_s=cfg.influx.timeout_s,
                        gzip_level=1 if cfg.influx.gzip else 0)


def _v2(cfg: CollectorConfig) -> StorageSink:
    return InfluxV2Sink(cfg.influx.url, cfg.influx.token or "", cfg.influx.org,
                        cfg.influx.bucket or cfg.influx.database, cfg.influx.timeout_s,
                        cfg.influx.gzip)


SINKS: dict[str, Callable[[CollectorConfig], StorageSink]] = {"v1": _v1, "v2": _v2}


def make_sink(cfg: CollectorConfig) -> StorageSink:
    return SINKS[cfg.influx.api](cfg)
