"""The alert manager: transitions → lifecycle → (group → mute → dedup) → outbox.

Called on the collector's thread with the engine's transitions and `now_ms` (also with an
empty list every tick, which is what runs the group and escalation timers). It never
talks to a channel: it decides messages into the SQLite outbox, in the same transaction
as the state that caused them, and wakes the channel workers.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from alert_rules.transitions import Transition
from collector.alerting import dedup, events, grouping, routing
from collector.alerting.channels.notifier import Address
from collector.alerting.config import AlertingConfig, Route, Target
from collector.alerting.contacts import ContactDirectory
from collector.alerting.errors import NotResponsible, UnknownAlert
from collector.alerting.lifecycle import Lifecycle
from collector.alerting.matchers import parse as parse_matchers
from collector.alerting.model import Alert, Event, Message
from collector.alerting.mute import Muter, Silence
from collector.alerting.phones import e164_or_none
from collector.alerting.principals import Principal, Responsible
from collector.alerting.store import Store
from collector.alerting.templates import Templates

log = logging.getLogger(__name__)

# "收到 123", "收到#123", "ACK 123", "确认 123": the reply a grid worker types.
SMS_ACK = re.compile(r"^\s*(?:收到|确认|ACK|OK)\s*[#＃:：]?\s*(\d+)\s*$", re.IGNORECASE)
DEFAULT_ROUTE = Route(receiver="", group_wait_ms=0, group_interval_ms=0)
# recipients resolved per device from the contact directory
DEVICE_RECIPIENTS = ("grid_worker", "technician")


class AlertManager:
    def __init__(self, cfg: AlertingConfig, store: Store, contacts: ContactDirectory,
                 addresses: dict[str, Address],
                 wake: Callable[[Iterable[str]], None] = lambda names: None,
                 on_event: Callable[[Event], None] = lambda ev: None) -> None:
        self.cfg = cfg
        self.store = store
        self.contacts = contacts
        self.addresses = addresses  # channel name → what its recipients are
        self.wake = wake
        self.on_event = on_event  # every lifecycle event, e.g. to InfluxDB (alert_events)
        self.lock = threading.RLock()  # acks arrive on other threads
        self.templates = {lang: Templates(lang, contacts, cfg.aqi_standard)
                          for lang in ("zh", "en")}
        self.text = self.templates[cfg.language]
        self.counters: Counter[str] = Counter()
        self.lifecycle = Lifecycle(store.insert_alert, cfg.reopen_within_ms)
        self._sends = store.group_sends()
        self._purged_ms = 0
        self._loaded = False
        self._config_silences = [Silence(-(i + 1), s.matchers, s.starts_ms, s.ends_ms, s.author,
                                         s.reason) for i, s in enumerate(cfg.silences)]
        self.muter = Muter(self._silences(), cfg.inhibit)

    def _silences(self) -> list[Silence]:
        stored = []
        for i, m, a, b, who, why in self.store.silences():
            try:
                stored.append(Silence(i, parse_matchers(m), a, b, who, why))
            except ValueError as exc:
                # saved by an older version that accepted any Python regex: not run, told
                self.counters["silence_unusable"] += 1
                log.error("silence %d (by %s) is not used: %s", i, who, exc)
        return self._config_silences + stored

    # -- inputs --------------------------------------------------------------------------
    def handle(self, transitions: Sequence[Transition], now_ms: int) -> None:
        with self.lock:
            self.ensure_loaded(now_ms)
            touched: set[str] = set()
            with self.store.tx():
                for t in transitions:
                    if t.state == "pending":
                        self.counters["pending"] += 1
                        continue
                    ev = self.lifecycle.apply(t, self._labels(t))
                    if ev is not None:
                        touched |= self._publish_event(ev, now_ms)
                firing = self._firing()
                muted = {a.id for a in firing if self.muter.reason(a, firing, now_ms)}
                for ev in self.lifecycle.escalate(self.cfg.escalation, now_ms,
                                                  lambda a: a.id in muted):
                    touched |= self._publish_event(ev, now_ms)
                    touched |= self._escalation_notices(ev, now_ms)
                touched |= self._flush_groups(now_ms, muted)
                self.lifecycle.forget(now_ms)
                if now_ms - self._purged_ms >= 3_600_000:  # hourly is plenty for retention
                    self._purged_ms = now_ms
                    self.counters["purged"] += self.store.purge(
                        now_ms - self.cfg.outbox_retention_ms)
                    self._purge_resolved(now_ms - self.cfg.resolved_retention_ms)
        if touched:
            self.wake(touched)

    def _purge_resolved(self, before_ms: int) -> None:
        alerts, sends = self.store.purge_resolved(before_ms)
        self.counters["purged_alerts"] += alerts
        self.counters["purged_group_sends"] += sends
        for key in [k for k, (last, _) in self._sends.items() if last < before_ms]:
            del self._sends[key]

    def adopt(self, transitions: Sequence[Transition], now_ms: int) -> int:
        """Announced alerts taken over with moved devices (`collector.handover` read them
        on record): opened here without an event, so that their end is announced from
        here. Returns how many were opened."""
        with self.lock:
            self.ensure_loaded(now_ms)
            opened = 0
            with self.store.tx():  # each opened alert is inserted (its id) in one commit
                for t in transitions:
                    if t.state == "firing":
                        opened += self.lifecycle.adopt(t, self._labels(t)) is not None
            self.counters["adopted"] += opened
        return opened

    def hand_over(self, devices: Sequence[str], now_ms: int) -> int:
        """Devices moved to another collector (`collector.handover` forgot them): their
        firing alerts are closed here silently, so this collector neither escalates nor
        reminds about an alert whose end only the new owner will see. Returns how many."""
        with self.lock:
            if not self._loaded:
                self.lifecycle.load(self.store.load_alerts(now_ms - self.cfg.reopen_within_ms))
                self._loaded = True
            closed = self.lifecycle.hand_over(devices, now_ms)
            if closed:
                with self.store.tx():
                    for a in closed:
                        self.store.update_alert(a, self.lifecycle.seq.get(a.id, 0))
                self.counters["handed_over"] += len(closed)
        return len(closed)

    def acknowledge(self, alert_id: int, who: Principal, now_ms: int, via: str,
                    authorized: bool = False) -> Alert:
        """Stop escalation; publish the acknowledgement as an event. Idempotent.

        Only the alert's responsible people and the chain above them may (`responsible`):
        anyone else is NotResponsible, counted and logged. The history records `who.name`.
        `authorized`: the caller has already checked the person's area (the grid worker
        app, whose officers come from the registry's workers).
        """
        with self.lock:
            self.ensure_loaded(now_ms)
            if alert_id not in self.lifecycle.by_id:
                self.counters["ack_unknown"] += 1
                raise UnknownAlert(f"no open alert #{alert_id}")
            if not authorized and \
                    not self.responsible(self.lifecycle.by_id[alert_id]).allows(who):
                self.counters[f"ack_refused_{via}"] += 1
                log.warning("acknowledgement of alert #%d by %s (%s) via %s refused: not "
                            "responsible for it", alert_id, who.name,
                            who.phone or who.app_id, via)
                raise NotResponsible(f"{who.name} is not responsible for alert #{alert_id}")
            by = f"{who.name} ({who.phone})" if via == "sms" else who.name
            touched: set[str] = set()
            with self.store.tx():
                ev = self.lifecycle.acknowledge(alert_id, by, now_ms)
                if ev is not None:
                    ev.detail["via"] = via
                    touched = self._publish_event(ev, now_ms)
            self.counters[f"ack_{via}"] += 1
            alert = self.lifecycle.by_id[alert_id]
        if touched:
            self.wake(touched)
        return alert

    def ensure_loaded(self, now_ms: int) -> None:
        with self.lock:
            if not self._loaded:
                self.lifecycle.load(self.store.load_alerts(now_ms - self.cfg.reopen_within_ms))
                self._loaded = True

    def open_external(self, rule: str, subject: str, labels: dict[str, str],
                      annotations: dict[str, str], now_ms: int,
                      detail: dict[str, object] | None = None) -> Alert:
        """Open an alert that no rule decided (a citizen complaint): the same lifecycle,
        id space (an SMS "收到 N" acknowledges it), routing, escalation and events."""
        with self.lock:
            self.ensure_loaded(now_ms)
            a = Alert(id=0, rule=rule, subject=subject, state="firing", value=0.0,
                      severity=labels.get("severity", "warning"),
                      labels={**labels, "alertname": rule, "rule": rule},
                      annotations=dict(annotations), started_ms=now_ms, updated_ms=now_ms,
                      level_since_ms=now_ms)
            with self.store.tx():
                a.id = self.store.insert_alert(a)
                self.lifecycle.by_key[a.key] = a
                self.lifecycle.by_id[a.id] = a
                ev = self.lifecycle._event("firing", a, now_ms, **(detail or {}))
                touched = self._publish_event(ev, now_ms)
        self.wake(touched)
        return a

    def escalate_now(self, alert_id: int, now_ms: int, by: str) -> bool:
        """A person escalates (上报) an alert: it moves one level up the ladder at once,
        acknowledged or not, with the same event and notices as a timed escalation.
        False when it is not firing or already at the top."""
        with self.lock:
            self.ensure_loaded(now_ms)
            a = self.lifecycle.by_id[alert_id]
            if a.state != "firing" or a.level >= len(self.cfg.escalation):
                return False
            waited = now_ms - a.level_since_ms
            a.level += 1
            a.level_since_ms = a.updated_ms = now_ms
            with self.store.tx():
                ev = self.lifecycle._event("escalated", a, now_ms, waited_ms=waited, by=by)
                touched = self._publish_event(ev, now_ms) | self._escalation_notices(ev, now_ms)
            self.counters["escalated_by_person"] += 1
        self.wake(touched)
        return True

    def close_external(self, alert_id: int, now_ms: int) -> None:
        """Resolve an alert opened by `open_external` (its work order was handled)."""
        with self.lock, self.store.tx():
            a = self.lifecycle.by_id[alert_id]
            if a.state != "firing":
                return
            a.state, a.updated_ms, a.resolved_ms = "resolved", now_ms, now_ms
            touched = self._publish_event(self.lifecycle._event("resolved", a, now_ms), now_ms)
        self.wake(touched)

    def on_sms(self, channel: str, sender: str, text: str, now_ms: int) -> Alert | None:
        """An SMS reply: "收到 123" / "ACK 123" from a known contact acknowledges #123."""
        m = SMS_ACK.match(text)
        if m is None:
            self.counters["sms_unparsed"] += 1
            log.warning("SMS from %s on %s is not an acknowledgement: %r", sender, channel, text)
            return None
        phone = e164_or_none(sender)
        name = None if phone is None else self.contacts.by_phone(phone)
        if phone is None or name is None:
            self.counters["sms_unknown_sender"] += 1
            self.counters["ack_refused_sms"] += 1
            log.warning("SMS acknowledgement from unknown number %s ignored", sender)
            return None
        try:
            return self.acknowledge(int(m.group(1)), Principal(name or phone, "", phone),
                                    now_ms, "sms")
        except (UnknownAlert, NotResponsible) as exc:
            log.warning("SMS from %s: %s", sender, exc)
            return None

    def responsible(self, alert: Alert) -> Responsible:
        """Who may acknowledge `alert`: its grid worker, the officers above them (its
        township's and the county's), and the literal numbers / app ids its route and
        escalation notify."""
        phones: set[str] = set()
        apps: set[str] = set()

        def add(phone: str, app_id: str) -> None:
            p = e164_or_none(phone) if phone else None
            if p is not None:
                phones.add(p)
            if app_id:
                apps.add(app_id)

        if alert.labels.get("scope") != "regional":
            c = self.contacts.for_device(alert.labels.get("device", alert.subject))
            if c is not None:
                add(c.worker_phone, c.worker_app_id)
        for o in self.contacts.officers_of(alert.labels.get("township", "")):
            add(o.phone, o.app_id)
        receivers = {r.receiver for r in routing.match(self.cfg.route, alert.labels)} \
            if self.cfg.route is not None else set()
        for level in self.cfg.escalation:
            receivers |= set(level.receivers)
        for name in receivers:
            for t in self.cfg.receivers[name].targets if name in self.cfg.receivers else ():
                if t.to.startswith("+"):
                    add(t.to, "")
                elif self.addresses.get(t.channel) == "app" and t.to != "grid_worker":
                    add("", t.to)  # a literal app id (a role name here matches no app)
        return Responsible(frozenset(phones), frozenset(apps))

    def add_silence(self, matchers: dict[str, str], starts_ms: int, ends_ms: int, author: str,
                    reason: str) -> int:
        parse_matchers(matchers)  # a bad regex is refused before it is stored
        with self.lock:
            sid = self.store.add_silence(matchers, starts_ms, ends_ms, author, reason)
            self.muter = Muter(self._silences(), self.cfg.inhibit)
        return sid

    def get(self, alert_id: int) -> Alert | None:
        with self.lock:
            return self.lifecycle.by_id.get(alert_id)

    # -- stages --------------------------------------------------------------------------
    def _labels(self, t: Transition) -> dict[str, str]:
        labels = {**t.labels, "alertname": t.rule, "rule": t.rule, "severity": t.severity}
        if labels.get("scope") == "regional":
            labels.setdefault("township", t.subject)
        else:
            labels.setdefault("device", t.subject)
            c = self.contacts.for_device(t.subject)
            if c is not None:
                labels.setdefault("township", c.township)
                labels.setdefault("grid", c.grid)
        return labels

    def _firing(self) -> list[Alert]:
        return [a for a in self.lifecycle.by_id.values() if a.state == "firing"]

    def _publish_event(self, ev: Event, now_ms: int) -> set[str]:
        self.store.update_alert(self.lifecycle.by_id[ev.alert.id], self.lifecycle.seq[ev.alert.id])
        # only inhibition needs the other firing alerts (this keeps a burst of N alerts O(N))
        firing = self._firing() if self.cfg.inhibit else []
        muted = self.muter.reason(ev.alert, firing, now_ms) if ev.kind != "resolved" else None
        minutes = int(ev.detail.get("waited_ms", 0)) // 60_000
        text = self.text.alert(ev.kind, ev.alert, ev.at_ms, minutes=minutes)
        body = events.to_cloudevent(ev, text, muted)
        msgs = [Message(id=f"ev:{body['id']}:{ch}", channel=ch, recipient="", kind="event",
                        text=text, event=body, retain_key=f"{ev.alert.rule}/{ev.alert.subject}")
                for ch in self.cfg.event_channels]
        self.store.enqueue(msgs, now_ms)
        self.counters[f"event_{ev.kind}"] += 1
        self.on_event(ev)
        return set(self.cfg.event_channels)

    def _recipient(self, target: Target, alert: Alert) -> str:
        kind = self.addresses.get(target.channel, "none")
        if kind == "none":
            return target.to if target.to not in DEVICE_RECIPIENTS else ""
        if target.to == "grid_worker":
            c = self.contacts.for_device(alert.labels.get("device", alert.subject))
            if c is None:
                return ""
            return c.worker_phone if kind == "phone" else c.worker_app_id
        if target.to == "technician":  # maintenance alerts: who maintains the sensor
            c = self.contacts.for_device(alert.subject)
            if c is None:
                return ""
            return c.technician_phone if kind == "phone" else c.technician_app_id
        township = alert.labels.get("township", "")
        officer = self.contacts.officer(target.to, township)
        if officer is not None:
            return officer.phone if kind == "phone" else officer.app_id
        return target.to if target.to.startswith("+") or kind == "app" else ""

    def _messages(self, prefix: str, receiver: str, group: str, level: int, firing: list[Alert],
                  resolved: list[Alert], now_ms: int, text_for: Callable[[list[Alert],
                  list[Alert]], str]) -> list[Message]:
        out = []
        for target in self.cfg.receivers[receiver].targets:
            by_recipient: dict[str, tuple[list[Alert], list[Alert]]] = {}
            for a in firing + resolved:
                r = self._recipient(target, a)
                if not r and self.addresses.get(target.channel) != "none":
                    self.counters["unroutable"] += 1
                    log.warning("alert #%d: no %s for %r on channel %s", a.id, target.to,
                                a.subject, target.channel)
                    continue
                f, res = by_recipient.setdefault(r, ([], []))
                (f if a in firing else res).append(a)
            for r, (f, res) in by_recipient.items():
                # ASCII and deterministic: it travels in HTTP headers; group keys are Chinese
                digest = hashlib.sha256(f"{prefix}|{target.channel}|{r}".encode()).hexdigest()
                mid = f"{prefix.split(':', 1)[0]}:{digest[:32]}"
                text = text_for(f, res)
                out.append(Message(
                    id=mid, channel=target.channel, recipient=r, kind="notification",
                    text=text, event=events.notification(mid, receiver, group, level, f, res,
                                                         text, now_ms)))
        return out

    def _flush_groups(self, now_ms: int, muted: set[int]) -> set[str]:
        route = self.cfg.route
        if route is None:
            return set()
        touched: set[str] = set()
        groups = grouping.build(self.lifecycle.by_id.values(), route)
        for (recv, key), g in groups.items():
            last = self._sends.get((recv, key))
            if not grouping.due(g, last[0] if last else None, now_ms):
                continue
            receiver = self.cfg.receivers[recv]
            told = set(last[1].split(",")) if last else set()
            firing = [a for a in g.alerts
                      if a.state == "firing" and not a.acknowledged and a.id not in muted]
            resolved = [a for a in g.alerts if receiver.send_resolved and a.state == "resolved"
                        and f"f{a.id}" in told]
            fp = dedup.fingerprint(firing, resolved)
            if not dedup.should_send(fp, last, now_ms, g.route.repeat_interval_ms):
                continue
            msgs = self._messages(f"n:{recv}:{key}:{now_ms}", recv, key, 0, firing, resolved,
                                  now_ms, lambda f, r: self.text.group(f, r, now_ms))
            self.store.enqueue(msgs, now_ms)
            self.store.set_group_sent(recv, key, now_ms, fp)
            self._sends[(recv, key)] = (now_ms, fp)
            self.counters["notifications"] += len(msgs)
            touched |= {m.channel for m in msgs}
        return touched

    def _escalation_notices(self, ev: Event, now_ms: int) -> set[str]:
        a = ev.alert
        minutes = int(ev.detail.get("waited_ms", 0)) // 60_000
        msgs: list[Message] = []
        for recv in self.cfg.escalation[a.level - 1].receivers:
            msgs += self._messages(f"e:{a.id}:{a.level}:{recv}", recv, a.key, a.level, [a], [],
                                   now_ms, lambda f, r: self.text.alert("escalated", a, now_ms,
                                                                        minutes=minutes))
        self.store.enqueue(msgs, now_ms)
        self.counters["escalation_notices"] += len(msgs)
        return {m.channel for m in msgs}
