"""Collector configuration (TOML): one struct per table, validated once at start-up.

The defaults below are the defaults; relative paths are taken from the config file's folder.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from airgrid.config import Invalid, RelativeToFile, Section, decode, load_file
from airgrid.wire import MAX_FUTURE_MS, MAX_PAYLOAD_BYTES
from collector.alerting.config import AlertingSettings
from collector.tick_schedule import DEFAULT_ARRIVAL_TICKS

Port = Annotated[int, Meta(gt=0, lt=65536, description="a TCP port")]
FilePath = Annotated[Path, RelativeToFile()]
Seconds = Annotated[float, Meta(gt=0, description="seconds > 0")]
SecondsOrZero = Annotated[float, Meta(ge=0, description="seconds >= 0")]


class Broker(Section, frozen=True):
    host: str = "127.0.0.1"
    port: Port = 1883
    username: str | None = None
    password: str | None = None
    client_id: str = "airgrid-collector"
    prefix: str = "airgrid"
    max_unacked: Annotated[int, Meta(ge=1, le=65535,
                                     description="1..65535 (MQTT Receive Maximum)")] = 2000
    session_expiry_s: Annotated[int, Meta(gt=0, description="seconds > 0 (the session must "
                                          "outlive a restart)")] = 7 * 24 * 3600


class Influx(Section, frozen=True):
    api: Annotated[Literal["v1", "v2"], Meta(
        description='"v1" (InfluxDB 1.x /write) or "v2" (/api/v2/write)')] = "v1"
    url: str = "http://127.0.0.1:8086"
    database: str = "airgrid"
    username: str | None = None
    password: str | None = None
    token: str | None = None
    org: str = "airgrid"
    bucket: str | None = None
    timeout_s: Seconds = 10.0
    #: compress write bodies; unset: on unless `url` is a loopback address (compressing
    #: for a database on this host costs both processes CPU and saves nothing)
    gzip: bool | None = None
    retries: Annotated[int, Meta(ge=0, le=10, description="0..10")] = 2
    backoff_ms: Annotated[int, Meta(ge=1, description="milliseconds >= 1")] = 200
    writes_in_flight: Annotated[int, Meta(ge=1, le=8, description="1..8")] = 2
    #: a write not answered after this long is copied to the spool and acknowledged from
    #: there (ingest never waits for a slow InfluxDB); 0 turns it off: ingest then waits
    #: for write slots, as the back-pressure
    spill_after_ms: Annotated[int, Meta(ge=0, description="milliseconds >= 0")] = 1000

    @property
    def compress(self) -> bool:
        """Whether write bodies are gzipped (`gzip`, or by where InfluxDB is)."""
        if self.gzip is not None:
            return self.gzip
        host = urllib.parse.urlsplit(self.url).hostname or ""
        if host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:  # a name: another host
            return True

    def problems(self) -> Iterator[Invalid]:
        if self.api == "v2" and not self.token:
            yield Invalid("token", 'an API token (required when api = "v2")')


class Batch(Section, frozen=True):
    max_messages: Annotated[int, Meta(ge=1, description="an integer >= 1")] = 500
    max_lines: Annotated[int, Meta(ge=1, description="an integer >= 1")] = 5000
    max_wait_ms: Annotated[int, Meta(ge=0, description="milliseconds >= 0")] = 200


Weight = Annotated[int, Meta(ge=1, description="a weight (integer >= 1)")]
AmqpUrl = Annotated[str, Meta(pattern=r"^amqps?://", description="an amqp:// or amqps:// URL")]


class Amqp(Section, frozen=True):
    # A list, or one string of URLs separated by whitespace: what `urls_file` (a mounted
    # Kubernetes Secret) gives, since the URLs carry the password.
    urls: Annotated[tuple[AmqpUrl, ...], Meta(
        min_length=1, description="a non-empty list of amqp:// URLs (tried in turn)")] | str = (
        "amqp://guest:guest@127.0.0.1:5672/%2F",)
    collector: Annotated[str, Meta(pattern=r"^[^ ]+$", description="this collector's name "
                                   "(its queue airgrid.collector.NAME)")] = "c1"
    prefetch: Annotated[int, Meta(ge=1, le=65535,
                                  description="1..65535 (unacknowledged deliveries)")] = 2000
    setup_topology: bool = True
    # name = weight on the hash ring; empty: this collector alone
    collectors: dict[str, Weight] = msgspec.field(default_factory=dict)
    # Each collector's queues (the same on every collector): a quorum queue's work after
    # a node loss grows with the square of its publishers (docs/province.md).
    queues_per_collector: Annotated[int, Meta(ge=1, le=64, description="1..64")] = 1
    rebuild_lookback_s: SecondsOrZero = 3600.0
    forget_after_s: Seconds = 600.0

    @property
    def url_list(self) -> list[str]:
        return self.urls.split() if isinstance(self.urls, str) else list(self.urls)

    @property
    def ring(self) -> tuple[tuple[str, int], ...]:
        """The collectors sharing the devices, each with its weight on the hash ring."""
        return tuple((self.collectors or {self.collector: 1}).items())

    def problems(self) -> Iterator[Invalid]:
        if isinstance(self.urls, str) and (
                not self.url_list
                or not all(u.startswith(("amqp://", "amqps://")) for u in self.url_list)):
            yield Invalid("urls", "amqp:// or amqps:// URLs separated by whitespace")
        if self.collectors and self.collector not in self.collectors:
            yield Invalid("collectors", f"an entry for this collector {self.collector!r}",
                          sorted(self.collectors))


class Validation(Section, frozen=True):
    max_payload_bytes: Annotated[int, Meta(ge=64, description="bytes >= 64")] = MAX_PAYLOAD_BYTES
    max_future_s: SecondsOrZero = MAX_FUTURE_MS / 1000

    @property
    def max_future_ms(self) -> int:
        return int(self.max_future_s * 1000)


class Spool(Section, frozen=True):
    dir: FilePath = Path("collector-state/spool")
    max_bytes: Annotated[int, Meta(ge=4096, description="bytes >= 4096")] = 1 << 30


class State(Section, frozen=True):
    file: FilePath = Path("collector-state/state.db")


class Gaps(Section, frozen=True):
    """Sequence gaps (readings not yet received): how long and how many are awaited."""

    # a gap still open after this is declared lost (counted); a reading of it that
    # arrives later is still stored. The default outlasts a week's network outage.
    max_age_s: Seconds = 7 * 86_400.0
    # gaps (ranges of missing seqs) kept per device; beyond it the oldest is declared lost
    max_ranges: Annotated[int, Meta(ge=1, le=100_000, description="1..100000")] = 256


class Retention(Section, frozen=True):
    """How long state that only grows is kept (its history lives in InfluxDB)."""

    # checkpointed hourly sums are kept this long: a later reading of an older hour is
    # stored but changes no hourly aggregate (counted); at least 2 h (the hours in memory)
    hourly_s: Annotated[float, Meta(ge=7200, description="seconds >= 7200")] = 48 * 3600.0
    # a device silent this long is forgotten: its seq state, health and (when the
    # registry does not list it) its rule state; it starts afresh if it reports again
    forget_devices_after_s: Seconds = 30 * 86_400.0


class Registry(Section, frozen=True):
    file: FilePath | None = None
    unknown: Annotated[Literal["accept", "reject"], Meta(
        description='"accept" (flag with tag unregistered=true) or "reject"')] = "accept"
    reload_check_s: Seconds = 2.0


class Metrics(Section, frozen=True):
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, lt=65536,
                              description="a TCP port, or 0 for no endpoint")] = 0
    #: one completeness series per device (`airgrid_collector_device_seq_completeness_ratio`):
    #: off by default, a province's 100,000 devices would be 100,000 series
    per_device_completeness: bool = False


class Log(Section, frozen=True):
    format: Annotated[Literal["text", "json"], Meta(description='"text" or "json"')] = "text"


class Rules(Section, frozen=True):
    files: tuple[FilePath, ...] = ()  # none: the default rule set
    tick_interval_s: Seconds = 1.0  # the timer: deadman, `for:`, windows sliding on
    # stored readings also tick the engine, debounced, at most this often (0: timer only)
    max_arrival_ticks_per_s: Annotated[float, Meta(
        ge=0, description="ticks a second >= 0 (0: tick on the timer only)")
    ] = DEFAULT_ARRIVAL_TICKS
    # a reading this much older than the last tick is judged in its own time (a backlog);
    # none: one bucket of the engine's finest window (a tick has judged a later bucket)
    late_after_s: Seconds | None = None


class CollectorConfig(Section, frozen=True):
    # Where messages come from: "mqtt" ([broker], a county) or "amqp" ([amqp], a province).
    source: Annotated[Literal["mqtt", "amqp"],
                      Meta(description="one of ('mqtt', 'amqp')")] = "mqtt"
    broker: Broker = Broker()
    influx: Influx = Influx()
    batch: Batch = Batch()
    amqp: Amqp = Amqp()
    validation: Validation = Validation()
    spool: Spool = Spool()
    state: State = State()
    registry: Registry = Registry()
    gaps: Gaps = Gaps()
    retention: Retention = Retention()
    metrics: Metrics = Metrics()
    log: Log = Log()
    rules: Rules = Rules()
    alerting: AlertingSettings = AlertingSettings()


def from_dict(data: Mapping[str, Any], file: Path | str = "<config>") -> CollectorConfig:
    """A parsed config table (no secrets resolved, no permission check): tests, tools."""
    return decode(data, CollectorConfig, file)


def load(path: Path) -> CollectorConfig:
    """The collector's config file; `check-config` and `run` both validate through this."""
    return load_file(path, CollectorConfig)
