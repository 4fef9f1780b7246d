"""Wiring: config → store, channels (from the registry), workers, manager, ack endpoints."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from airgrid.wire import deadletter_topic
from alert_rules.transitions import Transition
from collector.alerting.ack_mqtt import MqttAckListener
from collector.alerting.channels import registry
from collector.alerting.channels.mqtt_bus import MqttNotifier
from collector.alerting.channels.notifier import Context, Notifier
from collector.alerting.config import DEFAULT_EVENT_CHANNEL, AlertingConfig
from collector.alerting.contacts import ContactDirectory
from collector.alerting.delivery import ChannelWorker, DeliveryStats
from collector.alerting.http_api import AlertHttpApi
from collector.alerting.manager import AlertManager
from collector.alerting.model import Event, Message
from collector.alerting.store import Store

log = logging.getLogger(__name__)


class Recorder(Protocol):
    """Told every lifecycle event and every delivery outcome (any thread)."""

    def event(self, ev: Event) -> None: ...

    def delivery(self, msg: Message, delivered: bool, at_ms: int) -> None: ...


class ManagerCounters:
    """The manager's decisions (events per kind, notifications, acknowledgements per way,
    unroutable alerts, ...) as one Prometheus counter with a `what` label."""

    def __init__(self, manager: AlertManager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("airgrid_alert_decisions",
                                     "alert manager decisions by kind", labels=["what"])
        for what, n in sorted(self.manager.counters.items()):
            family.add_metric([what], n)
        yield family


class StoreSizes:
    """Rows per table of the alerting store (`airgrid_alert_store_rows`), counted at
    scrape time: retention keeps the tables small, the gauge shows it does."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("airgrid_alert_store_rows",
                                   "rows in the alerting store, by table", labels=["table"])
        for table, n in sorted(self.store.sizes().items()):
            family.add_metric([table], n)
        yield family


class AlertingService:
    def __init__(self, cfg: AlertingConfig, ctx: Context,
                 contacts: ContactDirectory | None = None,
                 types: dict[str, registry.Factory] | None = None,
                 metrics: CollectorRegistry | None = None,
                 recorder: Recorder | None = None) -> None:
        """`metrics`: the registry the collector's `/metrics` serves (delivery counters
        and the manager's decisions are registered there); `recorder` is told every
        lifecycle event and delivery outcome (the collector writes them to InfluxDB)."""
        self.cfg = cfg
        self.ctx = ctx
        self.store = Store(cfg.state_db)
        ctx = Context(**{**ctx.__dict__, "on_sms": self._on_sms})
        self.notifiers: dict[str, Notifier] = {
            name: registry.build(spec, ctx, types) for name, spec in cfg.channels.items()}
        self.stats = DeliveryStats(metrics)
        self.workers = {name: ChannelWorker(self.notifiers[name], spec, self.store, self.stats,
                                            on_dead=self._on_dead,
                                            on_outcome=recorder.delivery if recorder else None)
                        for name, spec in cfg.channels.items()}
        self.recorder = recorder
        #: told every lifecycle event after the recorder, inside the transaction that
        #: decided it (the work orders record SMS and MQTT acknowledgements as steps)
        self.listeners: list[Callable[[Event], None]] = []
        self.manager = AlertManager(cfg, self.store, contacts or cfg.contacts,
                                    {n: c.address for n, c in self.notifiers.items()}, self._wake,
                                    on_event=self._on_event)
        if metrics is not None:
            metrics.register(ManagerCounters(self.manager))
            metrics.register(StoreSizes(self.store))
        self.http: AlertHttpApi | None = None
        if cfg.ack_http_port is not None:
            self.http = AlertHttpApi(self.manager, cfg.principals, cfg.ack_http_host,
                                     cfg.ack_http_port, cfg.ack_http_max_connections,
                                     cfg.ack_http_request_timeout_ms / 1000)
        self.mqtt_ack: MqttAckListener | None = None
        if cfg.ack_mqtt:
            self.mqtt_ack = MqttAckListener(
                self.manager, ctx.broker_host, ctx.broker_port, ctx.prefix, cfg.principals,
                client_id=f"{ctx.client_id}-alerts-ack", username=ctx.broker_username,
                password=ctx.broker_password, shared=ctx.shared_client)

    def start(self) -> None:
        for n in self.notifiers.values():
            n.start()
        for w in self.workers.values():
            w.start()
        if self.http is not None:
            self.http.start()
        if self.mqtt_ack is not None:
            self.mqtt_ack.start()

    def handle(self, transitions: Sequence[Transition], now_ms: int | None = None) -> None:
        """The collector's hook: every tick, with whatever the engine reported."""
        self.manager.handle(transitions, int(time.time() * 1000) if now_ms is None else now_ms)

    def _on_event(self, ev: Event) -> None:
        if self.recorder is not None:
            self.recorder.event(ev)
        for listener in self.listeners:
            listener(ev)

    def adopt(self, transitions: Sequence[Transition], now_ms: int) -> None:
        """`collector.handover`'s hook: alerts announced by another collector (or this one
        before it lost the device) and still open, taken over with their devices: opened
        here without an event, so that their end is announced from here."""
        self.manager.adopt(transitions, now_ms)

    def hand_over(self, devices: Sequence[str], now_ms: int) -> None:
        """`collector.handover`'s hook: these devices now report to another collector."""
        self.manager.hand_over(devices, now_ms)

    def _wake(self, channels: Iterable[str]) -> None:
        for c in channels:
            w = self.workers.get(c)
            if w is not None:
                w.wake()

    def _on_dead(self, msg: Message, attempts: int, error: str) -> None:
        """A notification given up on is also told on the dead-letter topic, like bad input."""
        bus = self.notifiers.get(DEFAULT_EVENT_CHANNEL)
        if not isinstance(bus, MqttNotifier) or msg.channel == DEFAULT_EVENT_CHANNEL:
            return
        body = {"reason": "alert_undelivered", "detail": error, "topic": "",
                "channel": msg.channel, "recipient": msg.recipient, "message_id": msg.id,
                "attempts": attempts, "at_ms": int(time.time() * 1000)}
        bus.publish_raw(deadletter_topic(bus.prefix),
                        json.dumps(body, ensure_ascii=False).encode())

    def _on_sms(self, channel: str, sender: str, text: str) -> None:
        self.manager.on_sms(channel, sender, text, int(time.time() * 1000))

    def stop(self) -> None:
        if self.mqtt_ack is not None:
            self.mqtt_ack.stop()
        if self.http is not None:
            self.http.stop()
        for w in self.workers.values():
            w.stop()
        for n in self.notifiers.values():
            n.close()
        self.store.close()
