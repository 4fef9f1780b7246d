"""The `[alerting]` table of the collector's TOML.

`AlertingSettings` is the table as written (validated with the rest of the collector's
config, in one pass); `AlertingConfig` is what the alerting service runs with, resolved
from it: routes inherit their parent's timings, matchers parsed, the event bus added.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from airgrid.config import Invalid, Parse, RelativeToFile, Section, decode
from collector.alerting import matchers as m
from collector.alerting.channels.settings import Channel, Duration, MqttChannel
from collector.alerting.contacts import DeviceContact, Officer, StaticContacts
from collector.alerting.phones import e164
from collector.alerting.principals import Principal

DEFAULT_EVENT_CHANNEL = "bus"


@dataclass(frozen=True)
class Target:
    channel: str
    to: str  # "grid_worker", "technician", a role ("township_officer"), a number / app id, or ""


@dataclass(frozen=True)
class Receiver:
    name: str
    targets: tuple[Target, ...]
    send_resolved: bool = False


@dataclass(frozen=True)
class Route:
    receiver: str
    matchers: tuple[m.Matcher, ...] = ()
    group_by: tuple[str, ...] = ("township", "grid")
    group_wait_ms: int = 30_000
    group_interval_ms: int = 300_000
    repeat_interval_ms: int = 4 * 3_600_000
    continue_: bool = False
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class EscalationLevel:
    after_ms: int  # not acknowledged this long after the previous level → this level
    receivers: tuple[str, ...]


@dataclass(frozen=True)
class SilenceSpec:
    matchers: tuple[m.Matcher, ...]
    starts_ms: int
    ends_ms: int
    author: str
    reason: str


@dataclass(frozen=True)
class InhibitRule:
    source: tuple[m.Matcher, ...]
    target: tuple[m.Matcher, ...]
    equal: tuple[str, ...]


@dataclass(frozen=True)
class ChannelSpec:
    """A configured channel: its name and its settings (the delivery worker's retry policy)."""

    name: str
    settings: Channel

    @property
    def type(self) -> str:
        return str(type(self.settings).__struct_config__.tag)

    @property
    def max_attempts(self) -> int:
        return self.settings.max_attempts

    @property
    def backoff_ms(self) -> int:
        return self.settings.backoff_ms

    @property
    def max_backoff_ms(self) -> int:
        return self.settings.max_backoff_ms


@dataclass(frozen=True)
class AlertingConfig:
    state_db: Path
    enabled: bool = True  # false: transitions go straight out as events, no lifecycle
    language: str = "zh"
    aqi_standard: str = "hj633-2026"
    reopen_within_ms: int = 3_600_000
    outbox_retention_ms: int = 30 * 86_400_000
    resolved_retention_ms: int = 90 * 86_400_000
    event_channels: tuple[str, ...] = (DEFAULT_EVENT_CHANNEL,)
    channels: dict[str, ChannelSpec] = field(default_factory=dict)
    receivers: dict[str, Receiver] = field(default_factory=dict)
    route: Route | None = None
    escalation: tuple[EscalationLevel, ...] = ()
    silences: tuple[SilenceSpec, ...] = ()
    inhibit: tuple[InhibitRule, ...] = ()
    contacts: StaticContacts = field(default_factory=lambda: StaticContacts({}))
    principals: tuple[Principal, ...] = ()
    ack_http_host: str = "127.0.0.1"
    ack_http_port: int | None = None  # None: no HTTP acknowledgement endpoint
    ack_http_max_connections: int = 16
    ack_http_request_timeout_ms: int = 10_000
    ack_mqtt: bool = True
    app: AppSettings | None = None  # the grid worker app (collector.workorders)




# --- the table as written ----------------------------------------------------------


def _matchers(value: object) -> tuple[m.Matcher, ...]:
    if not isinstance(value, Mapping):
        raise ValueError("a table of label = value")
    return m.parse(value)


Matchers = Annotated[tuple[m.Matcher, ...],
                     Parse(_matchers, "label matchers, a table of label = value", explain=True)]
def _phone(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not a string: {value!r}")
    return value and e164(value)


Phone = Annotated[str, Parse(_phone, "a phone number such as +8613800000000 or 13800000000 "
                             "(national numbers are taken as China's, +86)")]
ChannelName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,40}$",  # ids, headers, labels
                                  description="a channel name of letters, digits, _ and -")]
Moment = Annotated[dt.datetime, Meta(tz=True, description="a TOML date-time with an offset, "
                                     "like 2026-11-25T08:00:00+08:00")]


class RouteSettings(Section, frozen=True):
    """Unset timings and grouping: the parent route's."""

    receiver: str = ""
    match: Matchers = ()
    group_by: tuple[str, ...] | None = None
    group_wait_ms: Duration | None = msgspec.field(default=None, name="group_wait")
    group_interval_ms: Duration | None = msgspec.field(default=None, name="group_interval")
    repeat_interval_ms: Duration | None = msgspec.field(default=None, name="repeat_interval")
    continue_: bool = msgspec.field(default=False, name="continue")
    routes: tuple[RouteSettings, ...] = ()


class TargetSettings(Section, frozen=True):
    channel: str = ""
    to: str = ""


class ReceiverSettings(Section, frozen=True):
    targets: tuple[TargetSettings, ...] = ()
    send_resolved: bool = False


class EscalationSettings(Section, frozen=True):
    after_ms: Duration = msgspec.field(name="after")
    receivers: tuple[str, ...] = ()


class SilenceSettings(Section, frozen=True):
    match: Matchers = ()
    starts: Moment | None = None
    ends: Moment | None = None
    author: str = ""
    reason: str = ""


class InhibitSettings(Section, frozen=True):
    source: Matchers = ()
    target: Matchers = ()
    equal: tuple[str, ...] = ()


class DeviceContactSettings(Section, frozen=True):
    device: Annotated[str, Meta(min_length=1, description="a device id")]
    name: str = ""  # "": the device id
    township: str = ""
    grid: str = ""
    worker_name: str = ""
    worker_phone: Phone = ""
    worker_app_id: str = ""
    technician_name: str = ""
    technician_phone: Phone = ""
    technician_app_id: str = ""


class OfficerSettings(Section, frozen=True):
    role: Annotated[str, Meta(min_length=1, description="a role such as township_officer")]
    township: Annotated[str, Meta(description="a township or *")] = "*"
    name: str = ""
    phone: Phone = ""
    app_id: str = ""


class ContactsSettings(Section, frozen=True):
    devices: tuple[DeviceContactSettings, ...] = ()
    officers: tuple[OfficerSettings, ...] = ()


class PrincipalSettings(Section, frozen=True):
    """One credential: a person (by phone, as in the contacts) and/or their app."""

    name: Annotated[str, Meta(min_length=1, max_length=80, description="a person's or an "
                              "app's name, recorded in the alert's history")]
    token: Annotated[str, Meta(min_length=16, description="a token of at least 16 characters "
                               "(token_file or token_env keep it out of the file)")]
    phone: Phone = ""
    app_id: str = ""


class AckSettings(Section, frozen=True):
    # the one shared token this replaced: refused with a pointer to principals
    token: str = ""
    principals: tuple[PrincipalSettings, ...] = ()
    http_host: Annotated[str, Meta(description="a host address")] = "127.0.0.1"
    # None: no HTTP acknowledgement endpoint
    http_port: Annotated[int, Meta(ge=0, lt=65536, description="a TCP port (0 = any free "
                                   "port)")] | None = None
    # at most this many HTTP connections served at once (one thread each); more get 503
    http_max_connections: Annotated[int, Meta(ge=1, le=256, description="1 to 256")] = 16
    # a connection's whole time, accept to answer: a slow sender is cut off at it
    http_request_timeout_ms: Duration = msgspec.field(default=10_000,
                                                      name="http_request_timeout")
    mqtt: bool = True


class ComplaintSettings(Section, frozen=True):
    # the HMAC key complaints are signed with (like our webhooks); "" refuses every one
    secret: Annotated[str, Meta(pattern=r"^(|[\s\S]{16,})$",
                                description="a key of at least 16 characters (secret_file "
                                "or secret_env keep it out of the file)")] = ""


class AppSettings(Section, frozen=True):
    """`[alerting.app]`: the grid worker app and the complaint endpoint (one HTTP server)."""

    http_host: Annotated[str, Meta(description="a host address")] = "127.0.0.1"
    # None: no app
    http_port: Annotated[int, Meta(ge=0, lt=65536, description="a TCP port (0 = any free "
                                   "port)")] | None = None
    # what a sign-in link starts with, as phones reach the app ("" = http://host:port)
    public_url: Annotated[str, Meta(pattern=r"^(https?://[^\s]+)?$",
                                    description="an http(s) URL")] = ""
    link_ttl_ms: Duration = msgspec.field(default=7 * 86_400_000, name="link_ttl")
    http_max_connections: Annotated[int, Meta(ge=1, le=256, description="1 to 256")] = 32
    http_request_timeout_ms: Duration = msgspec.field(default=10_000,
                                                      name="http_request_timeout")
    # the county's Tianditu browser key for the map's basemap ("" = markers only)
    tianditu_key: Annotated[str, Meta(pattern=r"^[A-Za-z0-9]{0,64}$",
                                      description="a Tianditu key (letters and digits)")] = ""
    complaints: ComplaintSettings = ComplaintSettings()


class AlertingSettings(Section, frozen=True):
    enabled: bool = True  # false: transitions go straight out as events, no lifecycle
    state_db: Annotated[Path, RelativeToFile()] = Path("alerting.sqlite")
    language: Annotated[Literal["zh", "en"], Meta(description='"zh" or "en"')] = "zh"
    aqi_standard: Annotated[str, Meta(description="a standard id")] = "hj633-2026"
    reopen_within_ms: Duration = msgspec.field(default=3_600_000, name="reopen_within")
    outbox_retention_ms: Duration = msgspec.field(default=30 * 86_400_000,
                                                  name="outbox_retention")
    # resolved alerts and group send times older than this leave the store (the alert
    # history lives in InfluxDB's alert_events); longer than reopen_within and any
    # route's repeat_interval, or an alert would reopen or repeat as new
    resolved_retention_ms: Duration = msgspec.field(default=90 * 86_400_000,
                                                    name="resolved_retention")
    event_channels: tuple[str, ...] = (DEFAULT_EVENT_CHANNEL,)
    channels: dict[ChannelName, Channel] = msgspec.field(default_factory=dict)
    receivers: dict[str, ReceiverSettings] = msgspec.field(default_factory=dict)
    route: RouteSettings | None = None
    escalation: tuple[EscalationSettings, ...] = ()
    silences: tuple[SilenceSettings, ...] = ()
    inhibit: tuple[InhibitSettings, ...] = ()
    contacts: ContactsSettings = ContactsSettings()
    ack: AckSettings = AckSettings()
    app: AppSettings = AppSettings()

    def channel_names(self) -> list[str]:
        """The configured channels, and the event bus when events go to it by default."""
        names = set(self.channels)
        if DEFAULT_EVENT_CHANNEL in self.event_channels:
            names.add(DEFAULT_EVENT_CHANNEL)
        return sorted(names)

    def problems(self) -> Iterator[Invalid]:
        """References between tables: receivers, channels and routes must exist."""
        channels, receivers = self.channel_names(), sorted(self.receivers)
        if self.resolved_retention_ms < self.reopen_within_ms:
            yield Invalid("resolved_retention", "a duration at least reopen_within "
                          f"({self.reopen_within_ms // 1000} s)",
                          f"{self.resolved_retention_ms // 1000} s")
        repeats = [r.repeat_interval_ms for r in _routes(self.route)
                   if r.repeat_interval_ms is not None]
        if repeats and self.resolved_retention_ms < max(repeats):
            yield Invalid("resolved_retention", "a duration at least the longest route "
                          f"repeat_interval ({max(repeats) // 1000} s)",
                          f"{self.resolved_retention_ms // 1000} s")
        for name, rcv in self.receivers.items():
            for i, t in enumerate(rcv.targets):
                if t.channel not in channels:
                    yield Invalid(f"receivers.{name}.targets[{i}].channel",
                                  f"one of {channels}", t.channel)
        if self.route is not None:
            if not self.route.receiver:
                yield Invalid("route.receiver", "a receiver name (required on the root route)")
            yield from _route_problems(self.route, "route", receivers)
        for i, level in enumerate(self.escalation):
            for n in level.receivers:
                if n not in self.receivers:
                    yield Invalid(f"escalation[{i}].receivers", f"receivers among {receivers}",
                                  n)
        for e in self.event_channels:
            if e not in self.channels and e != DEFAULT_EVENT_CHANNEL:
                yield Invalid("event_channels", f"channels among {channels}", e)
        if self.ack.token:
            yield Invalid("ack.token", "no shared token: one credential per person or app in "
                          "[[alerting.ack.principals]] (name, phone or app_id, token)")
        names: set[str] = set()
        tokens: set[str] = set()
        for i, p in enumerate(self.ack.principals):
            if not p.phone and not p.app_id:
                yield Invalid(f"ack.principals[{i}]", "a phone or an app_id: whose credential "
                              "this is decides which alerts it may acknowledge")
            if p.name in names:
                yield Invalid(f"ack.principals[{i}].name", "a name no other principal has",
                              p.name)
            if p.token in tokens:
                # not repeated: it is a secret
                yield Invalid(f"ack.principals[{i}].token", "a token no other principal has")
            names.add(p.name)
            tokens.add(p.token)


def _routes(route: RouteSettings | None) -> Iterator[RouteSettings]:
    if route is not None:
        yield route
        for child in route.routes:
            yield from _routes(child)


def _route_problems(route: RouteSettings, key: str, receivers: list[str]) -> Iterator[Invalid]:
    if route.receiver and route.receiver not in receivers:
        yield Invalid(f"{key}.receiver", f"one of {receivers}", route.receiver)
    for i, child in enumerate(route.routes):
        yield from _route_problems(child, f"{key}.routes[{i}]", receivers)


# --- what the service runs with ------------------------------------------------------


def from_dict(data: Mapping[str, Any], file: Path | str = "<config>") -> AlertingConfig:
    """The `[alerting]` table on its own (tests, tools); raises ConfigError listing all."""
    return resolve(decode(data, AlertingSettings, file, prefix="alerting"))


def resolve(s: AlertingSettings) -> AlertingConfig:
    """The runtime model of a validated table (cannot fail)."""
    channels = {name: ChannelSpec(name, c) for name, c in s.channels.items()}
    if DEFAULT_EVENT_CHANNEL in s.event_channels and DEFAULT_EVENT_CHANNEL not in channels:
        # the county's event bus on the collector's own broker, unless configured otherwise
        channels[DEFAULT_EVENT_CHANNEL] = ChannelSpec(DEFAULT_EVENT_CHANNEL, MqttChannel())
    receivers = {name: Receiver(name, tuple(Target(t.channel, t.to) for t in r.targets),
                                r.send_resolved) for name, r in s.receivers.items()}
    return AlertingConfig(
        state_db=s.state_db, enabled=s.enabled, language=s.language,
        aqi_standard=s.aqi_standard, reopen_within_ms=s.reopen_within_ms,
        outbox_retention_ms=s.outbox_retention_ms,
        resolved_retention_ms=s.resolved_retention_ms, event_channels=s.event_channels,
        channels=channels, receivers=receivers,
        route=None if s.route is None else _route(s.route, Route(receiver="")),
        escalation=tuple(EscalationLevel(e.after_ms, e.receivers) for e in s.escalation),
        silences=tuple(SilenceSpec(x.match, _ms(x.starts, 0), _ms(x.ends, 2**62), x.author,
                                   x.reason) for x in s.silences),
        inhibit=tuple(InhibitRule(i.source, i.target, i.equal) for i in s.inhibit),
        contacts=_contacts(s.contacts),
        principals=tuple(Principal(p.name, p.token, p.phone, p.app_id)
                         for p in s.ack.principals),
        ack_http_host=s.ack.http_host, ack_http_port=s.ack.http_port,
        ack_http_max_connections=s.ack.http_max_connections,
        ack_http_request_timeout_ms=s.ack.http_request_timeout_ms,
        ack_mqtt=s.ack.mqtt, app=s.app,
    )


def _route(r: RouteSettings, parent: Route) -> Route:
    def pick(own: int | None, inherited: int) -> int:
        return inherited if own is None else own

    route = Route(
        receiver=r.receiver or parent.receiver, matchers=r.match,
        group_by=parent.group_by if r.group_by is None else r.group_by,
        group_wait_ms=pick(r.group_wait_ms, parent.group_wait_ms),
        group_interval_ms=pick(r.group_interval_ms, parent.group_interval_ms),
        repeat_interval_ms=pick(r.repeat_interval_ms, parent.repeat_interval_ms),
        continue_=r.continue_,
    )
    return Route(**{**route.__dict__, "routes": tuple(_route(c, route) for c in r.routes)})


def _ms(moment: dt.datetime | None, default: int) -> int:
    return default if moment is None else int(moment.timestamp() * 1000)


def _contacts(s: ContactsSettings) -> StaticContacts:
    devices = {d.device: DeviceContact(
        device=d.device, name=d.name or d.device, township=d.township, grid=d.grid,
        worker_name=d.worker_name, worker_phone=d.worker_phone,
        worker_app_id=d.worker_app_id, technician_name=d.technician_name,
        technician_phone=d.technician_phone, technician_app_id=d.technician_app_id)
        for d in s.devices}
    officers = {(o.role, o.township): Officer(name=o.name, phone=o.phone, app_id=o.app_id)
                for o in s.officers}
    return StaticContacts(devices, officers)
