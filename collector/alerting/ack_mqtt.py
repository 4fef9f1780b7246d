"""MQTT acknowledgement: a JSON `{"token": "..."}` on `airgrid/v1/cmd/alerts/{id}/ack`.

Who may publish there is the broker's ACL's call (grid workers' apps); a subscriber does
not learn the publisher's MQTT username, so the payload carries the sender's own token
(`[[alerting.ack.principals]]`), which names them. The holder must be responsible for the
alert (`principals`); the history records the holder's name, whatever `"by"` says. The
acknowledgement then goes out as an event like any other; a refusal is counted and logged.
"""

from __future__ import annotations

import json
import logging
import re
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector.alerting.errors import NotResponsible, UnknownAlert
from collector.alerting.manager import AlertManager
from collector.alerting.principals import Principal, by_token

log = logging.getLogger(__name__)


def command_topic(prefix: str, alert_id: str = "+") -> str:
    return f"{prefix}/v1/cmd/alerts/{alert_id}/ack"


class MqttAckListener:
    def __init__(self, manager: AlertManager, host: str, port: int, prefix: str,
                 principals: tuple[Principal, ...],
                 client_id: str = "airgrid-alerts-ack", username: str | None = None,
                 password: str | None = None, shared: mqtt.Client | None = None) -> None:
        self.manager = manager
        self.prefix = prefix
        self.principals = principals
        self.pattern = re.compile(rf"^{re.escape(prefix)}/v1/cmd/alerts/([0-9]{{1,18}})/ack$")
        self.host, self.port = host, port
        self.owned = shared is None
        if shared is not None:
            # The collector's connection subscribes to command_topic() itself and acks
            # manually: acknowledge each command once it is handled.
            self.client = shared
            shared.message_callback_add(command_topic(prefix), self._on_shared_message)
            return
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5)
        if username:
            c.username_pw_set(username, password)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(command_topic(prefix), qos=1)
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 10)
        self.client = c

    def start(self) -> None:
        if self.owned:
            self.client.connect_async(self.host, self.port, keepalive=30)
            self.client.loop_start()

    def _on_shared_message(self, client: mqtt.Client, userdata: object,
                           msg: mqtt.MQTTMessage) -> None:
        try:
            self._on_message(client, userdata, msg)
        finally:
            if msg.qos:
                client.ack(msg.mid, msg.qos)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        m = self.pattern.match(msg.topic)
        try:
            if m is None:
                raise ValueError("not an acknowledgement topic")
            body = json.loads(msg.payload or b"{}")
            if not isinstance(body, dict):
                raise ValueError("payload is not a JSON object")
            token = body.get("token")
            who = by_token(self.principals, token) if isinstance(token, str) else None
            if who is None:
                self.manager.counters["ack_refused_mqtt"] += 1
                raise ValueError("missing or wrong token")
            self.manager.acknowledge(int(m.group(1)), who, int(time.time() * 1000), "mqtt")
        except NotResponsible as exc:  # counted by the manager
            log.warning("acknowledgement on %s refused: %s", msg.topic, exc)
        except (ValueError, RecursionError, UnknownAlert) as exc:
            self.manager.counters["ack_mqtt_rejected"] += 1
            log.warning("acknowledgement on %s rejected: %s", msg.topic, exc)

    def stop(self) -> None:
        if self.owned:
            self.client.disconnect()
            self.client.loop_stop()
        else:
            self.client.message_callback_remove(command_topic(self.prefix))
