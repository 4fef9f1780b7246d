"""MQTT v5 ingest with a persistent session and manual acknowledgement.

A message is acknowledged (PUBACK) only when the pipeline says its readings are stored.
The broker's Receive Maximum bounds what is unacknowledged: that is the back-pressure.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from airgrid.wire import device_subscription
from collector.delivery import Delivery

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600


class MqttIngest:
    def __init__(
        self, host: str, port: int, client_id: str, prefix: str, max_unacked: int,
        username: str | None = None, password: str | None = None,
        session_expiry_s: int = SESSION_EXPIRY_S,
    ) -> None:
        self.host, self.port, self.prefix = host, port, prefix
        self.session_expiry_s = session_expiry_s
        self.max_unacked = max_unacked
        self.queue: queue.Queue[Delivery] = queue.Queue()
        self._generation = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        #: more (topic filter, qos) to subscribe on every connect, e.g. acknowledgement
        #: commands whose handler was added with client.message_callback_add()
        self.extra_subscriptions: list[tuple[str, int]] = []
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
            protocol=mqtt.MQTTv5, manual_ack=True,
        )
        if username:
            c.username_pw_set(username, password)
        c.reconnect_delay_set(1, 10)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self.client = c

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.max_unacked
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False,
                                  properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, props: Properties | None) -> None:
        if reason.is_failure:
            log.error("broker refused the collector: %s", reason)
            return
        self._generation += 1
        log.info("connected to %s:%s (session present: %s)", self.host, self.port,
                 flags.session_present)
        client.subscribe([(device_subscription("up", self.prefix), 1),
                          (device_subscription("status", self.prefix), 1),
                          *self.extra_subscriptions])
        self.connected.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        # paho calls this from inside its `except OSError` around the connect and keeps
        # retrying (reconnect_delay_set); the exception being handled is the reason.
        exc = sys.exception()
        reason = f"{type(exc).__name__}: {exc}" if exc else "connection failed"
        log.warning("cannot reach broker %s:%s: %s; retrying", self.host, self.port, reason)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                      reasons: list[ReasonCode], props: Properties | None) -> None:
        # Until this SUBACK, the broker keeps nothing for the collector: a device that
        # publishes before the collector's first subscription loses that message.
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("subscription refused: %s", failed)
        else:
            log.info("subscribed to device topics")
            self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, props: Properties | None) -> None:
        self.connected.clear()
        self._generation += 1  # what arrived before is redelivered; never ack it now
        log.warning("disconnected from broker: %s", reason)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.queue.put(Delivery(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._generation))

    def take(self, max_messages: int, max_wait_s: float) -> list[Delivery]:
        """Up to max_messages; waits max_wait_s for the first, then takes what is there."""
        out: list[Delivery] = []
        try:
            out.append(self.queue.get(timeout=max_wait_s))
        except queue.Empty:
            return out
        while len(out) < max_messages:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return out

    def waiting(self) -> int:
        """Deliveries received and not yet taken."""
        return self.queue.qsize()

    def ack(self, deliveries: list[Delivery]) -> int:
        """PUBACK what is stored; returns how many were from an older connection."""
        stale = 0
        for d in deliveries:
            if d.qos == 0:
                continue
            if d.generation != self._generation:
                stale += 1
                continue
            self.client.ack(d.mid, d.qos)
        return stale

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)
