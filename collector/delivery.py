"""One message taken from the broker, whatever the broker: what the pipeline acknowledges."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Delivery:
    topic: str  # on the MQTT topic tree (`/` levels), whichever broker it came from
    payload: bytes
    mid: int  # the broker's id for the acknowledgement (MQTT packet id, AMQP delivery tag)
    qos: int
    generation: int  # connection it arrived on: acks never cross a reconnect
    channel: int = 0  # AMQP: which of the connection's consuming channels (tags are per channel)
