"""Edge agent configuration (TOML), validated once at start-up."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airgrid.config_schema import ConfigError, Field, validate
from airgrid.secrets_check import refuse_world_readable
from airgrid.wire import DEVICE_ID_RE
from edge_agent.publisher import BrokerSettings, PublishSettings

SENSOR_MODELS = ("pms5003",)
_positive = Field(float, check=lambda v: v > 0, expected="a number > 0")

SCHEMA: dict[str, Any] = {
    "device": Field(str, required=True, check=lambda v: bool(DEVICE_ID_RE.match(v)),
                    expected="a device id of letters, digits, '_', '.', '-' (max 64)"),
    "sensor": {
        "model": Field(str, "pms5003", check=lambda v: v in SENSOR_MODELS,
                       expected=f"one of {SENSOR_MODELS}"),
        "port": Field(str, "/dev/serial0", expected="a serial device path"),
        "baudrate": Field(int, 9600, check=lambda v: v > 0, expected="a positive integer"),
        "warmup_s": Field(float, 30.0, check=lambda v: v >= 0, expected="seconds >= 0"),
        "silent_after_s": Field(float, 10.0, check=lambda v: v > 0, expected="seconds > 0"),
    },
    "sampling": {"interval_s": Field(float, 60.0, check=lambda v: v >= 0.1,
                                     expected="seconds >= 0.1")},
    "outbox": {
        "path": Field(str, "/var/lib/airgrid/outbox.db", expected="a file path"),
        "max_rows": Field(int, 1_000_000, check=lambda v: v > 0, expected="a positive integer"),
        "synchronous": Field(str, "full", check=lambda v: v in ("full", "normal"),
                             expected="'full' (survives power loss) or 'normal'"),
    },
    "broker": {
        "host": Field(str, "127.0.0.1"),
        "port": Field(int, 1883, check=lambda v: 0 < v < 65536, expected="a TCP port"),
        "username": Field(str),
        "password": Field(str),
        "ca_file": Field(str),
        "cert_file": Field(str),
        "key_file": Field(str),
        "keepalive_s": Field(int, 30, check=lambda v: v >= 5, expected="seconds >= 5"),
        "prefix": Field(str, "airgrid", check=lambda v: "/" not in v and "+" not in v
                        and "#" not in v, expected="a topic level without / + #"),
    },
    "publish": {
        "batch_max": Field(int, 200, check=lambda v: 1 <= v <= 1000, expected="1..1000"),
        "window": Field(int, 20, check=lambda v: 1 <= v <= 1000, expected="1..1000"),
        "resend_after_s": _positive,
        "backoff_max_s": Field(float, 60.0, check=lambda v: v >= 1, expected="seconds >= 1"),
    },
    "clock": {"trust_system_clock": Field(bool, False)},
    "status": {"interval_s": Field(float, 60.0, check=lambda v: v > 0, expected="seconds > 0")},
}


@dataclass(frozen=True)
class EdgeConfig:
    device: str
    sensor_model: str
    port: str
    baudrate: int
    warmup_s: float
    silent_after_s: float
    interval_s: float
    outbox_path: Path
    outbox_max_rows: int
    outbox_synchronous: str
    broker: BrokerSettings
    publish: PublishSettings
    trust_system_clock: bool
    status_interval_s: float


def from_dict(data: dict[str, Any], file: Path | str = "<config>") -> EdgeConfig:
    c = validate(data, SCHEMA, file)
    b = c["broker"]
    if (b["cert_file"] is None) != (b["key_file"] is None):
        raise ConfigError(file, "broker.key_file", "cert_file and key_file together")
    p = c["publish"]
    return EdgeConfig(
        device=c["device"],
        sensor_model=c["sensor"]["model"],
        port=c["sensor"]["port"],
        baudrate=c["sensor"]["baudrate"],
        warmup_s=c["sensor"]["warmup_s"],
        silent_after_s=c["sensor"]["silent_after_s"],
        interval_s=c["sampling"]["interval_s"],
        outbox_path=Path(c["outbox"]["path"]),
        outbox_max_rows=c["outbox"]["max_rows"],
        outbox_synchronous=c["outbox"]["synchronous"].upper(),
        broker=BrokerSettings(**b),
        publish=PublishSettings(
            batch_max=p["batch_max"], window=p["window"],
            resend_after_s=p["resend_after_s"] or 60.0, backoff_max_s=p["backoff_max_s"],
        ),
        trust_system_clock=c["clock"]["trust_system_clock"],
        status_interval_s=c["status"]["interval_s"],
    )


def load(path: Path) -> EdgeConfig:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(path, "(file)", "a readable TOML file", str(exc)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "(syntax)", "valid TOML", str(exc)) from exc
    refuse_world_readable(path, data, ["broker.password"], ["broker.key_file"])
    return from_dict(data, path)
