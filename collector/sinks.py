"""The explicit registry of storage sinks, chosen by `influx.api` in the config."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from collector.influx_sink import InfluxV1Sink
from collector.influx_v2_sink import InfluxV2Sink
from collector.storage_sink import StorageSink

if TYPE_CHECKING:
    from collector.config import CollectorConfig


def _v1(cfg: CollectorConfig) -> StorageSink:
    return InfluxV1Sink(cfg.influx_url, cfg.influx_database, cfg.influx_username,
                        cfg.influx_password, timeout_s=cfg.influx_timeout_s,
                        gzip_level=1 if cfg.influx_gzip else 0)


def _v2(cfg: CollectorConfig) -> StorageSink:
    return InfluxV2Sink(cfg.influx_url, cfg.influx_token or "", cfg.influx_org,
                        cfg.influx_bucket or cfg.influx_database, cfg.influx_timeout_s,
                        cfg.influx_gzip)


SINKS: dict[str, Callable[[CollectorConfig], StorageSink]] = {"v1": _v1, "v2": _v2}


def make_sink(cfg: CollectorConfig) -> StorageSink:
    return SINKS[cfg.influx_api](cfg)
