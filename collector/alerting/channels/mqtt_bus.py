"""MQTT channel: lifecycle events as CloudEvents on `airgrid/v1/alerts/{rule}/{device}`,
the alert's current state retained on `airgrid/v1/alert-state/{rule}/{device}` (cleared
when it resolves) so a newly connected app sees what is open, and notifications to a
person's app on `airgrid/v1/notify/{app_id}`.

The retained state lives outside `alerts/#` so a subscriber to the event stream does not
get old state replayed as if it were new events.
"""

from __future__ import annotations

import json
import logging
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from airgrid.wire import alert_topic
from collector.alerting.channels.notifier import Address, Context
from collector.alerting.channels.settings import MqttChannel
from collector.alerting.config import ChannelSpec
from collector.alerting.errors import DeliveryRetry
from collector.alerting.model import Message

log = logging.getLogger(__name__)


def state_topic(prefix: str, retain_key: str) -> str:
    return f"{prefix}/v1/alert-state/{retain_key}"


#: CloudEvent types of work order steps (`collector.workorders`), published under
#: `{prefix}/v1/workorders/{subject}` instead of an alert's topic
WORKORDER_TYPE_PREFIX = "org.airgrid.workorder."


def workorder_topic(prefix: str, subject: str) -> str:
    return f"{prefix}/v1/workorders/{subject}"


def notify_topic(prefix: str, app_id: str) -> str:
    return f"{prefix}/v1/notify/{app_id}"


class MqttNotifier:
    address: Address = "app"

    def __init__(self, name: str, host: str, port: int, prefix: str, client_id: str,
                 username: str | None = None, password: str | None = None, qos: int = 1,
                 puback_timeout_s: float = 10.0, shared: mqtt.Client | None = None,
                 shared_connected: threading.Event | None = None) -> None:
        self.name = name
        self.prefix = prefix
        self.qos = qos
        self.timeout = puback_timeout_s
        self.host, self.port = host, port
        self.owned = shared is None
        if shared is not None and shared_connected is not None:
            self.client, self.connected = shared, shared_connected
            return
        self.connected = threading.Event()
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5)
        if username:
            c.username_pw_set(username, password)
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(1, 10)
        c.on_connect = lambda cl, u, f, rc, p: self.connected.set() if not rc.is_failure else None
        c.on_disconnect = lambda cl, u, f, rc, p: self.connected.clear()
        self.client = c

    def start(self) -> None:
        if self.owned:
            self.client.connect_async(self.host, self.port, keepalive=30)
            self.client.loop_start()

    def _publishes(self, msg: Message) -> list[tuple[str, bytes, bool]]:
        body = json.dumps(msg.event, ensure_ascii=False).encode()
        if msg.kind == "notification":
            return [(notify_topic(self.prefix, msg.recipient), body, False)]
        etype = str(msg.event.get("type", ""))
        if etype.startswith(WORKORDER_TYPE_PREFIX):  # a work order's step, never retained
            return [(workorder_topic(self.prefix, str(msg.event.get("subject", ""))), body,
                     False)]
        rule, _, subject = msg.retain_key.partition("/")
        out = [(alert_topic(rule, subject, self.prefix), body, False)]
        if msg.retain_key:
            resolved = msg.event.get("type", "").endswith(".resolved")
            # an empty retained payload deletes the retained message (MQTT 3.3.1.3)
            out.append((state_topic(self.prefix, msg.retain_key), b"" if resolved else body,
                        True))
        return out

    def send(self, msg: Message) -> None:
        err = self.send_many([msg])[0]
        if err is not None:
            raise err

    def send_many(self, msgs: list[Message]) -> list[Exception | None]:
        if not self.connected.wait(1.0):
            # the broker is down: not the message's fault, so not a counted attempt
            down = DeliveryRetry("not connected to the broker", after_s=1.0, counts=False)
            return [down for _ in msgs]
        infos: list[list[mqtt.MQTTMessageInfo]] = []
        for m in msgs:
            infos.append([self.client.publish(t, p, qos=self.qos, retain=r)
                          for t, p, r in self._publishes(m)])
        out: list[Exception | None] = []
        for group in infos:
            err: Exception | None = None
            for info in group:
                try:
                    info.wait_for_publish(self.timeout)
                except (RuntimeError, ValueError) as exc:
                    err = DeliveryRetry(f"publish failed: {exc}")
                if err is None and not info.is_published():
                    err = DeliveryRetry("no PUBACK in time")
            out.append(err)
        return out

    def publish_raw(self, topic: str, payload: bytes) -> None:
        """Fire and forget (QoS 1, queued by the client while it reconnects)."""
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        if self.owned:
            self.client.disconnect()
            self.client.loop_stop()


def from_spec(spec: ChannelSpec, ctx: Context) -> MqttNotifier:
    o = spec.settings
    assert isinstance(o, MqttChannel)
    # The collector's own broker and account: publish over its connection.
    same_broker = not any((o.host, o.port, o.username, o.client_id))
    return MqttNotifier(
        spec.name, o.host or ctx.broker_host, o.port or ctx.broker_port,
        o.prefix or ctx.prefix, o.client_id or f"{ctx.client_id}-alerts-{spec.name}",
        o.username or ctx.broker_username, o.password or ctx.broker_password,
        o.qos, o.puback_timeout_s,
        shared=ctx.shared_client if same_broker else None,
        shared_connected=ctx.shared_connected if same_broker else None)
