"""Collector configuration (TOML), validated once at start-up."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airgrid.config_schema import ConfigError, Field, validate
from airgrid.secrets_check import refuse_world_readable

SCHEMA: dict[str, Any] = {
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
    "rules": {
        "files": Field(list, [], check=lambda v: all(isinstance(x, str) for x in v),
                       expected="a list of rule file paths"),
        "tick_interval_s": Field(float, 1.0, check=lambda v: v > 0, expected="seconds > 0"),
    },
    # the alert lifecycle's own table, validated by collector.alerting.config
    "alerting": Field(dict, {}),
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
    alerting: dict[str, Any] = field(default_factory=dict)
    file: str = "<config>"


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
        alerting=c["alerting"], file=str(file),
    )


def load(path: Path) -> CollectorConfig:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(path, "(file)", "a readable TOML file", str(exc)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "(syntax)", "valid TOML", str(exc)) from exc
    refuse_world_readable(path, data, ["broker.password", "influx.password"])
    return from_dict(data, path)
