"""The `[alerting]` table of the collector's TOML: validated once, errors name file and key."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airgrid.config_schema import ConfigError
from airgrid.durations import parse_duration_ms
from collector.alerting import matchers as m
from collector.alerting.contacts import DeviceContact, Officer, StaticContacts

DEFAULT_EVENT_CHANNEL = "bus"


@dataclass(frozen=True)
class Target:
    channel: str
    to: str  # "grid_worker", a role ("township_officer"), a literal number / app id, or ""


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
    name: str
    type: str
    options: dict[str, Any]
    max_attempts: int = 8
    backoff_ms: int = 1000
    max_backoff_ms: int = 300_000


@dataclass(frozen=True)
class AlertingConfig:
    file: str
    state_db: Path
    enabled: bool = True  # false: transitions go straight out as events, no lifecycle
    language: str = "zh"
    aqi_standard: str = "hj633-2026"
    reopen_within_ms: int = 3_600_000
    outbox_retention_ms: int = 30 * 86_400_000
    event_channels: tuple[str, ...] = (DEFAULT_EVENT_CHANNEL,)
    channels: dict[str, ChannelSpec] = field(default_factory=dict)
    receivers: dict[str, Receiver] = field(default_factory=dict)
    route: Route | None = None
    escalation: tuple[EscalationLevel, ...] = ()
    silences: tuple[SilenceSpec, ...] = ()
    inhibit: tuple[InhibitRule, ...] = ()
    contacts: StaticContacts = field(default_factory=lambda: StaticContacts({}))
    ack_token: str = ""
    ack_http_host: str = "127.0.0.1"
    ack_http_port: int | None = None  # None: no HTTP acknowledgement endpoint
    ack_mqtt: bool = True


class _Reader:
    """Typed access to a table with errors naming file and dotted key."""

    def __init__(self, file: str, data: Mapping[str, Any], path: str, known: set[str]) -> None:
        self.file, self.data, self.path = file, data, path
        for key in data:
            if key not in known:
                raise ConfigError(file, self.key(key), f"one of {sorted(known)}", "unknown key")

    def key(self, k: str) -> str:
        return f"{self.path}.{k}" if self.path else k

    def get(self, k: str, types: type | tuple[type, ...], default: Any, expected: str) -> Any:
        if k not in self.data:
            return default
        v = self.data[k]
        if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise ConfigError(self.file, self.key(k), expected, v)
        if not isinstance(v, types):
            raise ConfigError(self.file, self.key(k), expected, v)
        return v

    def duration(self, k: str, default_ms: int) -> int:
        v = self.data.get(k)
        if v is None:
            return default_ms
        try:
            return parse_duration_ms(v)
        except ValueError as exc:
            raise ConfigError(self.file, self.key(k), "a duration like 30s, 5m, 4h", v) from exc

    def strings(self, k: str, default: tuple[str, ...]) -> tuple[str, ...]:
        v = self.data.get(k)
        if v is None:
            return default
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ConfigError(self.file, self.key(k), "a list of strings", v)
        return tuple(v)

    def matchers(self, k: str) -> tuple[m.Matcher, ...]:
        v = self.data.get(k, {})
        if not isinstance(v, Mapping):
            raise ConfigError(self.file, self.key(k), "a table of label = value", v)
        try:
            return m.parse(v)
        except ValueError as exc:
            raise ConfigError(self.file, self.key(k), "label matchers", str(exc)) from exc

    def table(self, k: str) -> Mapping[str, Any]:
        v = self.data.get(k, {})
        if not isinstance(v, Mapping):
            raise ConfigError(self.file, self.key(k), "a table", v)
        return v

    def tables(self, k: str) -> list[tuple[str, Mapping[str, Any]]]:
        v = self.data.get(k, [])
        if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
            raise ConfigError(self.file, self.key(k), "an array of tables", v)
        return [(f"{self.key(k)}[{i}]", x) for i, x in enumerate(v)]


def _route(file: str, path: str, data: Mapping[str, Any], parent: Route | None) -> Route:
    r = _Reader(file, data, path, {"receiver", "match", "group_by", "group_wait",
                                   "group_interval", "repeat_interval", "continue", "routes"})
    base = parent or Route(receiver="")
    receiver = r.get("receiver", str, base.receiver, "a receiver name")
    if not receiver:
        raise ConfigError(file, r.key("receiver"), "a receiver name (required on the root route)")
    route = Route(
        receiver=receiver, matchers=r.matchers("match"),
        group_by=r.strings("group_by", base.group_by),
        group_wait_ms=r.duration("group_wait", base.group_wait_ms),
        group_interval_ms=r.duration("group_interval", base.group_interval_ms),
        repeat_interval_ms=r.duration("repeat_interval", base.repeat_interval_ms),
        continue_=r.get("continue", bool, False, "true or false"),
    )
    children = tuple(_route(file, p, t, route) for p, t in r.tables("routes"))
    return Route(**{**route.__dict__, "routes": children})


def _contacts(file: str, path: str, data: Mapping[str, Any]) -> StaticContacts:
    r = _Reader(file, data, path, {"devices", "officers"})
    devices = {}
    for p, t in r.tables("devices"):
        d = _Reader(file, t, p, {"device", "name", "township", "grid", "worker_name",
                                 "worker_phone", "worker_app_id"})
        dev = d.get("device", str, None, "a device id")
        if not dev:
            raise ConfigError(file, d.key("device"), "a device id (required)")
        devices[dev] = DeviceContact(
            device=dev, name=d.get("name", str, dev, "a string"),
            township=d.get("township", str, "", "a string"),
            grid=d.get("grid", str, "", "a string"),
            worker_name=d.get("worker_name", str, "", "a string"),
            worker_phone=_phone(file, d, "worker_phone"),
            worker_app_id=d.get("worker_app_id", str, "", "a string"),
        )
    officers = {}
    for p, t in r.tables("officers"):
        o = _Reader(file, t, p, {"role", "township", "name", "phone", "app_id"})
        role = o.get("role", str, "", "a role such as township_officer")
        if not role:
            raise ConfigError(file, o.key("role"), "a role such as township_officer (required)")
        officers[(role, o.get("township", str, "*", "a township or *"))] = Officer(
            name=o.get("name", str, "", "a string"), phone=_phone(file, o, "phone"),
            app_id=o.get("app_id", str, "", "a string"))
    return StaticContacts(devices, officers)


def _phone(file: str, r: _Reader, key: str) -> str:
    v = str(r.get(key, str, "", "a phone number in international form, e.g. +8613800000000"))
    if v and not (v.startswith("+") and v[1:].isdigit()):
        raise ConfigError(file, r.key(key), "a phone number in international form (+86…)", v)
    return v


_TOP = {"enabled", "state_db", "language", "aqi_standard", "reopen_within", "outbox_retention",
        "event_channels",
        "channels", "receivers", "route", "escalation", "silences", "inhibit", "contacts", "ack"}


def from_dict(data: Mapping[str, Any], file: Path | str = "<config>") -> AlertingConfig:
    f = str(file)
    base = Path(f).parent if not f.startswith("<") else Path.cwd()
    r = _Reader(f, data, "alerting", _TOP)
    language = r.get("language", str, "zh", '"zh" or "en"')
    if language not in ("zh", "en"):
        raise ConfigError(f, r.key("language"), '"zh" or "en"', language)

    channels: dict[str, ChannelSpec] = {}
    for name, spec in r.table("channels").items():
        key = r.key(f"channels.{name}")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", name):
            # names go into message ids, HTTP headers and metric labels
            raise ConfigError(f, key, "a channel name of letters, digits, _ and -", name)
        if not isinstance(spec, Mapping):
            raise ConfigError(f, key, "a table with type = ...", spec)
        c = dict(spec)
        ctype = c.pop("type", None)
        if not isinstance(ctype, str):
            raise ConfigError(f, f"{key}.type", "a channel type (mqtt, webhook, sms_modem, "
                              "sms_gateway)", ctype)
        cr = _Reader(f, {k: c.pop(k) for k in ("max_attempts", "backoff", "max_backoff")
                         if k in c}, key, {"max_attempts", "backoff", "max_backoff"})
        attempts = cr.get("max_attempts", int, 8, "an integer >= 1")
        if attempts < 1:
            raise ConfigError(f, cr.key("max_attempts"), "an integer >= 1", attempts)
        channels[name] = ChannelSpec(name, ctype, c, attempts, cr.duration("backoff", 1000),
                                     cr.duration("max_backoff", 300_000))
    events = r.strings("event_channels", (DEFAULT_EVENT_CHANNEL,))
    if DEFAULT_EVENT_CHANNEL in events and DEFAULT_EVENT_CHANNEL not in channels:
        # the county's event bus on the collector's own broker, unless configured otherwise
        channels[DEFAULT_EVENT_CHANNEL] = ChannelSpec(DEFAULT_EVENT_CHANNEL, "mqtt", {})

    receivers: dict[str, Receiver] = {}
    for name, spec in r.table("receivers").items():
        key = r.key(f"receivers.{name}")
        if not isinstance(spec, Mapping):
            raise ConfigError(f, key, "a table with targets = [...]", spec)
        rr = _Reader(f, spec, key, {"targets", "send_resolved"})
        targets = []
        for p, t in rr.tables("targets"):
            tr = _Reader(f, t, p, {"channel", "to"})
            ch = tr.get("channel", str, "", "a channel name")
            if ch not in channels:
                raise ConfigError(f, tr.key("channel"), f"one of {sorted(channels)}", ch)
            targets.append(Target(ch, tr.get("to", str, "", "a string")))
        receivers[name] = Receiver(name, tuple(targets),
                                   rr.get("send_resolved", bool, False, "true or false"))

    route = None
    if "route" in data:
        route = _route(f, r.key("route"), r.table("route"), None)
        _check_receivers(f, route, receivers)
    escalation = []
    for p, t in r.tables("escalation"):
        er = _Reader(f, t, p, {"after", "receivers"})
        if "after" not in t:
            raise ConfigError(f, er.key("after"), "a duration like 10m (required)")
        names = er.strings("receivers", ())
        for n in names:
            if n not in receivers:
                raise ConfigError(f, er.key("receivers"), f"receivers among {sorted(receivers)}", n)
        escalation.append(EscalationLevel(er.duration("after", 0), names))
    silences = []
    for p, t in r.tables("silences"):
        sr = _Reader(f, t, p, {"match", "starts", "ends", "author", "reason"})
        silences.append(SilenceSpec(
            sr.matchers("match"), _time_ms(f, sr, "starts", 0), _time_ms(f, sr, "ends", 2**62),
            sr.get("author", str, "", "a string"), sr.get("reason", str, "", "a string")))
    inhibit = []
    for p, t in r.tables("inhibit"):
        ir = _Reader(f, t, p, {"source", "target", "equal"})
        inhibit.append(InhibitRule(ir.matchers("source"), ir.matchers("target"),
                                   ir.strings("equal", ())))
    for e in events:
        if e not in channels:
            raise ConfigError(f, r.key("event_channels"), f"channels among {sorted(channels)}", e)
    ack = _Reader(f, r.table("ack"), r.key("ack"), {"token", "http_host", "http_port", "mqtt"})
    port = ack.get("http_port", int, None, "a TCP port (0 = any free port)")
    return AlertingConfig(
        file=f, state_db=base / r.get("state_db", str, "alerting.sqlite", "a file path"),
        enabled=r.get("enabled", bool, True, "true or false"),
        language=language, aqi_standard=r.get("aqi_standard", str, "hj633-2026", "a standard id"),
        reopen_within_ms=r.duration("reopen_within", 3_600_000),
        outbox_retention_ms=r.duration("outbox_retention", 30 * 86_400_000),
        event_channels=events, channels=channels, receivers=receivers, route=route,
        escalation=tuple(escalation), silences=tuple(silences), inhibit=tuple(inhibit),
        contacts=_contacts(f, r.key("contacts"), r.table("contacts")),
        ack_token=ack.get("token", str, "", "a string"),
        ack_http_host=ack.get("http_host", str, "127.0.0.1", "a host address"),
        ack_http_port=port, ack_mqtt=ack.get("mqtt", bool, True, "true or false"),
    )


def _check_receivers(file: str, route: Route, receivers: Mapping[str, Receiver]) -> None:
    if route.receiver not in receivers:
        raise ConfigError(file, "alerting.route.receiver", f"one of {sorted(receivers)}",
                          route.receiver)
    for child in route.routes:
        _check_receivers(file, child, receivers)


def _time_ms(file: str, r: _Reader, key: str, default: int) -> int:
    import datetime as dt

    v = r.data.get(key)
    if v is None:
        return default
    if isinstance(v, dt.datetime):  # TOML offset date-time
        if v.tzinfo is None:
            raise ConfigError(file, r.key(key), "a date-time with an offset (+08:00)", str(v))
        return int(v.timestamp() * 1000)
    raise ConfigError(file, r.key(key), "a TOML date-time like 2026-11-25T08:00:00+08:00", v)
