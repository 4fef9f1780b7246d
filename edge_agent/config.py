"""Edge agent configuration (TOML), validated once at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airgrid.config_schema import ConfigError, Field, load_toml, validate
from airgrid.secrets_check import refuse_world_readable
from airgrid.wire import DEVICE_ID_RE
from edge_agent.drivers import SENSOR_MODELS
from edge_agent.publisher import BrokerSettings, PublishSettings

_positive = Field(float, check=lambda v: v > 0, expected="a number > 0")



def _host_port(x: object) -> bool:
    if not isinstance(x, str) or ":" not in x:
        return False
    host, _, port = x.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


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
        "failed_retry_s": Field(float, 60.0, check=lambda v: v > 0, expected="seconds > 0"),
        "mode": Field(str, "active", check=lambda v: v in ("active", "polled"),
                      expected="'active' (sensor reports by itself) or 'polled' "
                               "(passive / query mode: the agent asks)"),
        "poll_every_s": Field(float, 1.0, check=lambda v: v >= 0.1, expected="seconds >= 0.1"),
        "reset_gpio": Field(int, check=lambda v: 0 <= v <= 53,
                            expected="a BCM GPIO number 0..53 wired to the sensor's RESET"),
        "i2c_address": Field(int, 0x12, check=lambda v: 0x08 <= v <= 0x77,
                             expected="a 7-bit I2C address 0x08..0x77"),
        "stuck_frames": Field(int, 60, check=lambda v: v >= 2, expected="an integer >= 2"),
        "high_humidity_pct": Field(float, 85.0, check=lambda v: 0 < v <= 100,
                                   expected="a percentage 0..100"),
        "sleep_between_samples": Field(bool, False),
        "working_period_min": Field(int, check=lambda v: 0 <= v <= 30,
                                    expected="minutes 0..30 (SDS011 only; 0 = continuous)"),
    },
    "sampling": {"interval_s": Field(float, 60.0, check=lambda v: v >= 0.1,
                                     expected="seconds >= 0.1")},
    "outbox": {
        "path": Field(str, "/var/lib/airgrid/outbox.db", expected="a file path"),
        "max_rows": Field(int, 1_000_000, check=lambda v: v > 0, expected="a positive integer"),
        "max_bytes": Field(int, 0, check=lambda v: v >= 0,
                           expected="bytes >= 0 (0 = only max_rows applies)"),
        "synchronous": Field(str, "full", check=lambda v: v in ("full", "normal"),
                             expected="'full' (survives power loss) or 'normal'"),
        "commit_interval_s": Field(float, 0.0, check=lambda v: 0 <= v <= 3600,
                                   expected="seconds 0..3600 (0 = commit every reading)"),
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
        "hosts": Field(list, [], check=lambda v: all(_host_port(x) for x in v),
                       expected='a list of "host:port" brokers to fail over between'),
        "protocol": Field(str, "5", check=lambda v: v in ("5", "3.1.1"),
                          expected='"5" or "3.1.1" (RabbitMQ 3.10 speaks only 3.1.1)'),
    },
    "publish": {
        "batch_max": Field(int, 200, check=lambda v: 1 <= v <= 1000, expected="1..1000"),
        "window": Field(int, 20, check=lambda v: 1 <= v <= 1000, expected="1..1000"),
        "resend_after_s": _positive,
        "backoff_max_s": Field(float, 60.0, check=lambda v: v >= 1, expected="seconds >= 1"),
    },
    "clock": {
        "trust_system_clock": Field(bool, False),
        "hold_unsynced_s": Field(float, 600.0, check=lambda v: v >= 0,
                                 expected="seconds >= 0 to hold readings for an NTP sync"),
    },
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
    failed_retry_s: float = 60.0
    polled: bool = False
    poll_every_s: float = 1.0
    reset_gpio: int | None = None
    i2c_address: int = 0x12
    stuck_frames: int = 60
    high_humidity_pct: float = 85.0
    sleep_between_samples: bool = False
    outbox_max_bytes: int = 0
    commit_interval_s: float = 0.0
    hold_unsynced_s: float = 600.0
    working_period_min: int | None = None


def from_dict(data: dict[str, Any], file: Path | str = "<config>") -> EdgeConfig:
    c = validate(data, SCHEMA, file)
    b = c["broker"]
    if (b["cert_file"] is None) != (b["key_file"] is None):
        raise ConfigError(file, "broker.key_file", "cert_file and key_file together")
    p = c["publish"]
    sn = c["sensor"]
    if sn["sleep_between_samples"] and c["sampling"]["interval_s"] < sn["warmup_s"] + 10:
        raise ConfigError(file, "sensor.sleep_between_samples",
                          "false unless sampling.interval_s >= sensor.warmup_s + 10", True)
    if sn["working_period_min"] is not None and sn["model"] != "sds011":
        raise ConfigError(file, "sensor.working_period_min",
                          "to be set only with model = \"sds011\"", sn["working_period_min"])
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
        broker=BrokerSettings(**{**b, "hosts": tuple(b["hosts"])}),
        publish=PublishSettings(
            batch_max=p["batch_max"], window=p["window"],
            resend_after_s=p["resend_after_s"] or 60.0, backoff_max_s=p["backoff_max_s"],
        ),
        trust_system_clock=c["clock"]["trust_system_clock"],
        status_interval_s=c["status"]["interval_s"],
        failed_retry_s=sn["failed_retry_s"],
        polled=sn["mode"] == "polled",
        poll_every_s=sn["poll_every_s"],
        reset_gpio=sn["reset_gpio"],
        i2c_address=sn["i2c_address"],
        stuck_frames=sn["stuck_frames"],
        high_humidity_pct=sn["high_humidity_pct"],
        sleep_between_samples=sn["sleep_between_samples"],
        outbox_max_bytes=c["outbox"]["max_bytes"],
        commit_interval_s=c["outbox"]["commit_interval_s"],
        hold_unsynced_s=c["clock"]["hold_unsynced_s"],
        working_period_min=sn["working_period_min"],
    )


def load(path: Path) -> EdgeConfig:
    data = load_toml(path)
    refuse_world_readable(path, data, ["broker.password"], ["broker.key_file"])
    return from_dict(data, path)
