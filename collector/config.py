"""Collector configuration (TOML), validated once at start-up."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airgrid.config_schema import ConfigError, Field, validate

SOURCES = ("mqtt", "amqp")

SCHEMA: dict[str, Any] = {
    # Where messages come from: "mqtt" ([broker], a county) or "amqp" ([amqp], a province).
    "source": Field(str, "mqtt", check=lambda v: v in SOURCES, expected=f"one of {SOURCES}"),
    "broker": {
        "host": Field(str, "127.0.0.1"),
        "port": Field(int, 1883, check=lambda v: 0 < v < 65536, expected="a TCP port"),
        "username": Field(str),
        "password": Field(str),
        "client_id": Field(str, "airgrid-collector"),
        "prefix": Field(str, "airgrid"),
        "max_unacked": Field(int, 2000, check=lambda v: 1 <= v <= 65535,
                             expected="1..65535 (MQTT Receive Maximum)"),
    },
    "influx": {
        "url": Field(str, "http://127.0.0.1:8086"),
        "database": Field(str, "airgrid"),
        "username": Field(str),
        "password": Field(str),
    },
    "batch": {
        "max_messages": Field(int, 500, check=lambda v: v >= 1, expected="an integer >= 1"),
        "max_wait_ms": Field(int, 200, check=lambda v: v >= 0, expected="milliseconds >= 0"),
    },
    "amqp": {
        "urls": Field(list, ["amqp://guest:guest@127.0.0.1:5672/%2F"],
                      check=lambda v: bool(v) and all(isinstance(x, str) and
                                                      x.startswith(("amqp://", "amqps://"))
                                                      for x in v),
                      expected="a non-empty list of amqp:// URLs (tried in turn)"),
        "collector": Field(str, "c1", check=lambda v: bool(v) and " " not in v,
                           expected="this collector's name (its queue airgrid.collector.NAME)"),
        "prefetch": Field(int, 2000, check=lambda v: 1 <= v <= 65535,
                          expected="1..65535 (unacknowledged deliveries)"),
        "setup_topology": Field(bool, True),
        "collectors": Field(dict, {}, check=lambda v: all(
            isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in v.values()),
            expected="a table of collector name = weight (integer >= 1)"),
        "rebuild_lookback_s": Field(float, 3600.0, check=lambda v: v >= 0,
                                    expected="seconds >= 0"),
        "forget_after_s": Field(float, 600.0, check=lambda v: v > 0, expected="seconds > 0"),
    },
    "rules": {
        "files": Field(list, [], check=lambda v: all(isinstance(x, str) for x in v),
                       expected="a list of rule file paths"),
        "tick_interval_s": Field(float, 1.0, check=lambda v: v > 0, expected="seconds > 0"),
    },
}


@dataclass(frozen=True)
class CollectorConfig:
    broker_host: str
    broker_port: int
    broker_username: str | None
    broker_password: str | None
    client_id: str
    prefix: str
    max_unacked: int
    influx_url: str
    influx_database: str
    influx_username: str | None
    influx_password: str | None
    batch_max_messages: int
    batch_max_wait_ms: int
    rule_files: tuple[Path, ...]
    tick_interval_s: float
    source: str = "mqtt"
    amqp_urls: tuple[str, ...] = ()
    amqp_collector: str = "c1"
    amqp_prefetch: int = 2000
    amqp_setup_topology: bool = True
    amqp_collectors: tuple[tuple[str, int], ...] = ()  # name, weight on the hash ring
    rebuild_lookback_s: float = 3600.0
    forget_after_s: float = 600.0


def from_dict(data: dict[str, Any], file: Path | str = "<config>") -> CollectorConfig:
    c = validate(data, SCHEMA, file)
    b, i, bt, r = c["broker"], c["influx"], c["batch"], c["rules"]
    base = Path(file).parent if not str(file).startswith("<") else Path.cwd()
    return CollectorConfig(
        broker_host=b["host"], broker_port=b["port"], broker_username=b["username"],
        broker_password=b["password"], client_id=b["client_id"], prefix=b["prefix"],
        max_unacked=b["max_unacked"],
        influx_url=i["url"], influx_database=i["database"], influx_username=i["username"],
        influx_password=i["password"],
        batch_max_messages=bt["max_messages"], batch_max_wait_ms=bt["max_wait_ms"],
        rule_files=tuple((base / f) for f in r["files"]), tick_interval_s=r["tick_interval_s"],
        **_amqp(c, file),
    )


def _amqp(c: dict[str, Any], file: Path | str) -> dict[str, Any]:
    a = c["amqp"]
    collectors = dict(a["collectors"]) or {a["collector"]: 1}
    if a["collector"] not in collectors:
        raise ConfigError(file, "amqp.collectors", f"an entry for this collector "
                          f"{a['collector']!r}", sorted(collectors))
    return {
        "source": c["source"], "amqp_urls": tuple(a["urls"]), "amqp_collector": a["collector"],
        "amqp_prefetch": a["prefetch"], "amqp_setup_topology": a["setup_topology"],
        "amqp_collectors": tuple(collectors.items()),
        "rebuild_lookback_s": a["rebuild_lookback_s"], "forget_after_s": a["forget_after_s"],
    }


def load(path: Path) -> CollectorConfig:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(path, "(file)", "a readable TOML file", str(exc)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "(syntax)", "valid TOML", str(exc)) from exc
    return from_dict(data, path)
