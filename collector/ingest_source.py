"""The collector's ingest interface: where messages come from, whatever the broker.

Two sources satisfy it: `collector.mqtt_ingest.MqttIngest` (Mosquitto, EMQX: a county)
and `collector.amqp_ingest.AmqpIngest` (a RabbitMQ quorum queue: a province). Both give
the same guarantees to the pipeline: a delivery is acknowledged only when `ack` is called
after storage; a delivery from an older connection is never acknowledged (the broker
redelivers it and dedup by (device, seq) drops the repeat).
"""

from __future__ import annotations

import threading
from typing import Protocol

from collector.delivery import Delivery


class IngestSource(Protocol):
    #: set while connected to the broker (health report, readiness)
    connected: threading.Event

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def take(self, max_messages: int, max_wait_s: float) -> list[Delivery]:
        """Up to max_messages; waits max_wait_s for the first, then takes what is there."""
        ...

    def waiting(self) -> int:
        """Deliveries received and not yet taken (the service watchdog's "stuck" check)."""
        ...

    def ack(self, deliveries: list[Delivery]) -> int:
        """Acknowledge stored deliveries; returns how many were from an older connection."""
        ...

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Alerts and dead letters, on the MQTT topic tree (`/` levels)."""
        ...
