"""Edge agent configuration (TOML): one struct per table, validated once at start-up."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from msgspec import Meta

from airgrid.config import Invalid, Section, decode, load_file
from airgrid.wire import DEVICE_ID_RE
from edge_agent.drivers import SENSOR_MODELS

Port = Annotated[int, Meta(gt=0, lt=65536, description="a TCP port")]
HostPort = Annotated[str, Meta(pattern=r"^.+:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|"
                                       r"65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$",
                               description='a "host:port" broker')]


class Sensor(Section, frozen=True):
    model: Annotated[str, Meta(pattern="^(" + "|".join(SENSOR_MODELS) + ")$",
                               description=f"one of {SENSOR_MODELS}")] = "pms5003"
    port: Annotated[str, Meta(description="a serial device path")] = "/dev/serial0"
    baudrate: Annotated[int, Meta(gt=0, description="a positive integer")] = 9600
    warmup_s: Annotated[float, Meta(ge=0, description="seconds >= 0")] = 30.0
    silent_after_s: Annotated[float, Meta(gt=0, description="seconds > 0")] = 10.0
    failed_retry_s: Annotated[float, Meta(gt=0, description="seconds > 0")] = 60.0
    mode: Annotated[Literal["active", "polled"], Meta(
        description="'active' (sensor reports by itself) or 'polled' "
                    "(passive / query mode: the agent asks)")] = "active"
    poll_every_s: Annotated[float, Meta(ge=0.1, description="seconds >= 0.1")] = 1.0
    reset_gpio: Annotated[int, Meta(ge=0, le=53, description="a BCM GPIO number 0..53 wired "
                                    "to the sensor's RESET")] | None = None
    i2c_address: Annotated[int, Meta(ge=0x08, le=0x77,
                                     description="a 7-bit I2C address 0x08..0x77")] = 0x12
    stuck_frames: Annotated[int, Meta(ge=2, description="an integer >= 2")] = 60
    high_humidity_pct: Annotated[float, Meta(gt=0, le=100,
                                             description="a percentage 0..100")] = 85.0
    sleep_between_samples: bool = False
    working_period_min: Annotated[int, Meta(ge=0, le=30, description="minutes 0..30 (SDS011 "
                                            "only; 0 = continuous)")] | None = None

    @property
    def polled(self) -> bool:
        return self.mode == "polled"

    def problems(self) -> Iterator[Invalid]:
        if self.working_period_min is not None and self.model != "sds011":
            yield Invalid("working_period_min", 'to be set only with model = "sds011"',
                          self.working_period_min)


class Sampling(Section, frozen=True):
    interval_s: Annotated[float, Meta(ge=0.1, description="seconds >= 0.1")] = 60.0


class Outbox(Section, frozen=True):
    path: Annotated[Path, Meta(description="a file path")] = Path("/var/lib/airgrid/outbox.db")
    max_rows: Annotated[int, Meta(gt=0, description="a positive integer")] = 1_000_000
    max_bytes: Annotated[int, Meta(ge=0, description="bytes >= 0 (0 = only max_rows "
                                   "applies)")] = 0
    synchronous: Annotated[Literal["full", "normal"], Meta(
        description="'full' (survives power loss) or 'normal'")] = "full"
    commit_interval_s: Annotated[float, Meta(ge=0, le=3600, description="seconds 0..3600 "
                                             "(0 = commit every reading)")] = 0.0

    @property
    def sqlite_synchronous(self) -> str:
        """The value for SQLite's `PRAGMA synchronous`."""
        return self.synchronous.upper()


class BrokerSettings(Section, frozen=True):
    # No default: an agent that silently dials 127.0.0.1 on a Pi looks installed and
    # sends nothing.
    host: str = ""
    port: Port = 1883
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: Annotated[int, Meta(ge=5, description="seconds >= 5")] = 30
    prefix: Annotated[str, Meta(pattern=r"^[^/+#]*$",
                                description="a topic level without / + #")] = "airgrid"
    # Brokers to fail over between ("host:port", tried in turn); empty: host and port only.
    hosts: Annotated[tuple[HostPort, ...], Meta(
        description='a list of "host:port" brokers to fail over between')] = ()
    # "3.1.1" for brokers without MQTT 5, e.g. RabbitMQ 3.10's rabbitmq_mqtt plugin.
    protocol: Annotated[Literal["5", "3.1.1"], Meta(
        description='"5" or "3.1.1" (RabbitMQ 3.10 speaks only 3.1.1)')] = "5"

    def endpoints(self) -> list[tuple[str, int]]:
        if not self.hosts:
            return [(self.host, self.port)]
        return [(h.rpartition(":")[0], int(h.rpartition(":")[2])) for h in self.hosts]

    def problems(self) -> Iterator[Invalid]:
        if not self.host and not self.hosts:
            yield Invalid("host", "the broker's host name or address as this device "
                          "reaches it (or `hosts`)")
        if (self.cert_file is None) != (self.key_file is None):
            yield Invalid("key_file", "cert_file and key_file together")


class PublishSettings(Section, frozen=True):
    batch_max: Annotated[int, Meta(ge=1, le=1000, description="1..1000")] = 200  # per message
    window: Annotated[int, Meta(ge=1, le=1000, description="1..1000")] = 20  # unacknowledged
    # republish what a live connection never acknowledged
    resend_after_s: Annotated[float, Meta(gt=0, description="a number > 0")] = 60.0
    backoff_min_s: Annotated[float, Meta(gt=0, description="seconds > 0")] = 1.0
    backoff_max_s: Annotated[float, Meta(ge=1, description="seconds >= 1")] = 60.0


class Clock(Section, frozen=True):
    trust_system_clock: bool = False
    hold_unsynced_s: Annotated[float, Meta(ge=0, description="seconds >= 0 to hold readings "
                                           "for an NTP sync")] = 600.0


class Status(Section, frozen=True):
    interval_s: Annotated[float, Meta(gt=0, description="seconds > 0")] = 60.0


class EdgeConfig(Section, frozen=True):
    device: Annotated[str, Meta(pattern=DEVICE_ID_RE.pattern, description="a device id of "
                                "letters, digits, '_', '.', '-' (max 64)")]
    broker: BrokerSettings  # required: see BrokerSettings.host
    sensor: Sensor = Sensor()
    sampling: Sampling = Sampling()
    outbox: Outbox = Outbox()
    publish: PublishSettings = PublishSettings()
    clock: Clock = Clock()
    status: Status = Status()

    def problems(self) -> Iterator[Invalid]:
        if (self.sensor.sleep_between_samples
                and self.sampling.interval_s < self.sensor.warmup_s + 10):
            yield Invalid("sensor.sleep_between_samples",
                          "false unless sampling.interval_s >= sensor.warmup_s + 10", True)


def from_dict(data: Mapping[str, Any], file: Path | str = "<config>") -> EdgeConfig:
    """A parsed config table (no secrets resolved, no permission check): tests, tools."""
    return decode(data, EdgeConfig, file)


def load(path: Path) -> EdgeConfig:
    """The agent's config file; `airgrid-edge doctor` and `run` both load through this."""
    return load_file(path, EdgeConfig)
