"""Collector configuration (TOML), validated once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airgrid.config_schema import ConfigError, Field, load_toml, validate
from airgrid.secrets_check import refuse_world_readable
from airgrid.wire import MAX_FUTURE_MS, MAX_PAYLOAD_BYTES

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
        "session_expiry_s": Field(int, 7 * 24 * 3600, check=lambda v: v > 0,
                                  expected="seconds > 0 (the session must outlive a restart)"),
    },
    "influx": {
        "api": Field(str, "v1", check=lambda v: v in ("v1", "v2"),
                     expected='"v1" (InfluxDB 1.x /write) or "v2" (/api/v2/write)'),
        "url": Field(str, "http://127.0.0.1:8086"),
        "database": Field(str, "airgrid"),
        "username": Field(str),
        "password": Field(str),
        "token": Field(str),
        "org": Field(str, "airgrid"),
        "bucket": Field(str),
        "timeout_s": Field(float, 10.0, check=lambda v: v > 0, expected="seconds > 0"),
        "gzip": Field(bool, True),
        "retries": Field(int, 2, check=lambda v: 0 <= v <= 10, expected="0..10"),
        "backoff_ms": Field(int, 200, check=lambda v: v >= 1, expected="milliseconds >= 1"),
        "writes_in_flight": Field(int, 2, check=lambda v: 1 <= v <= 8, expected="1..8"),
    },
    "batch": {
        "max_messages": Field(int, 500, check=lambda v: v >= 1, expected="an integer >= 1"),
        "max_lines": Field(int, 5000, check=lambda v: v >= 1, expected="an integer >= 1"),
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
    "validation": {
        "max_payload_bytes": Field(int, MAX_PAYLOAD_BYTES, check=lambda v: v >= 64,
                                   expected="bytes >= 64"),
        "max_future_s": Field(float, MAX_FUTURE_MS / 1000, check=lambda v: v >= 0,
                              expected="seconds >= 0"),
    },
    "spool": {
        "dir": Field(str, "collector-state/spool"),
        "max_bytes": Field(int, 1 << 30, check=lambda v: v >= 4096, expected="bytes >= 4096"),
    },
    "state": {
        "file": Field(str, "collector-state/state.db"),
    },
    "registry": {
        "file": Field(str),
        "unknown": Field(str, "accept", check=lambda v: v in ("accept", "reject"),
                         expected='"accept" (flag with tag unregistered=true) or "reject"'),
        "reload_check_s": Field(float, 2.0, check=lambda v: v > 0, expected="seconds > 0"),
    },
    "metrics": {
        "host": Field(str, "127.0.0.1"),
        "port": Field(int, 0, check=lambda v: 0 <= v < 65536,
                      expected="a TCP port, or 0 for no endpoint"),
    },
    "log": {
        "format": Field(str, "text", check=lambda v: v in ("text", "json"),
                        expected='"text" or "json"'),
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
    session_expiry_s: int = 7 * 24 * 3600
    influx_api: str = "v1"
    influx_token: str | None = None
    influx_org: str = "airgrid"
    influx_bucket: str | None = None
    influx_timeout_s: float = 10.0
    influx_gzip: bool = True
    influx_retries: int = 2
    influx_backoff_ms: int = 200
    influx_writes_in_flight: int = 2
    batch_max_lines: int = 5000
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    max_future_ms: int = MAX_FUTURE_MS
    spool_dir: Path = Path("collector-state/spool")
    spool_max_bytes: int = 1 << 30
    state_file: Path = Path("collector-state/state.db")
    registry_file: Path | None = None
    unknown_devices: str = "accept"
    registry_reload_check_s: float = 2.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    log_format: str = "text"
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
    if i["api"] == "v2" and not i["token"]:
        raise ConfigError(file, "influx.token", 'an API token (required when api = "v2")')
    reg = c["registry"]
    return CollectorConfig(
        broker_host=b["host"], broker_port=b["port"], broker_username=b["username"],
        broker_password=b["password"], client_id=b["client_id"], prefix=b["prefix"],
        max_unacked=b["max_unacked"], session_expiry_s=b["session_expiry_s"],
        influx_url=i["url"], influx_database=i["database"], influx_username=i["username"],
        influx_password=i["password"], influx_api=i["api"], influx_token=i["token"],
        influx_org=i["org"], influx_bucket=i["bucket"], influx_timeout_s=i["timeout_s"],
        influx_gzip=i["gzip"], influx_retries=i["retries"], influx_backoff_ms=i["backoff_ms"],
        influx_writes_in_flight=i["writes_in_flight"],
        batch_max_messages=bt["max_messages"], batch_max_wait_ms=bt["max_wait_ms"],
        batch_max_lines=bt["max_lines"],
        max_payload_bytes=c["validation"]["max_payload_bytes"],
        max_future_ms=int(c["validation"]["max_future_s"] * 1000),
        spool_dir=base / c["spool"]["dir"], spool_max_bytes=c["spool"]["max_bytes"],
        state_file=base / c["state"]["file"],
        registry_file=(base / reg["file"]) if reg["file"] else None,
        unknown_devices=reg["unknown"], registry_reload_check_s=reg["reload_check_s"],
        metrics_host=c["metrics"]["host"], metrics_port=c["metrics"]["port"],
        log_format=c["log"]["format"],
        rule_files=tuple((base / f) for f in r["files"]), tick_interval_s=r["tick_interval_s"],
        alerting=c["alerting"], file=str(file),
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
    data = load_toml(path)
    refuse_world_readable(path, data, ["broker.password", "influx.password"])
    return from_dict(data, path)
