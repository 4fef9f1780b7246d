"""RabbitMQ topology for a province: each device's messages to one collector's queue.

    amq.topic ──(airgrid.v1.dev.*.up / .status)──▶ airgrid.devices (x-consistent-hash)
                                                 ──weight──▶ airgrid.collector.<name> (quorum)

The MQTT plugin publishes every MQTT message to `amq.topic` with the topic's `/` turned
into `.`, so a device's `up` topic becomes the routing key `airgrid.v1.dev.<device>.up`.
The consistent-hash exchange hashes the routing key onto
a ring where each bound queue holds `weight` points; adding a queue moves only the keys
that now fall on its points (about 1/N of the devices). A device's `up` and `status` keys
hash independently: status carries no per-device rule state, so where it is stored does
not matter.

Every declaration here is idempotent (declare/bind of what exists is a no-op), so each
collector runs `ensure` at start-up from its own config. Queues are quorum queues
(replicated by Raft over the cluster's nodes) with single active consumer, so a restarted
collector never consumes side by side with its stale connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pika.adapters.blocking_connection import BlockingChannel

from airgrid.wire import DEFAULT_PREFIX

HASH_EXCHANGE = "airgrid.devices"
QUEUE_PREFIX = "airgrid.collector."


def queue_name(collector: str) -> str:
    return QUEUE_PREFIX + collector


def routing_patterns(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """amq.topic patterns carrying device traffic (`#`: a dotted device id is several
    words, since rabbitmq_mqtt 3.10 leaves a `.` inside a topic level as it is)."""
    return [f"{prefix}.v1.dev.#.up", f"{prefix}.v1.dev.#.status"]


@dataclass(frozen=True)
class Topology:
    collectors: Mapping[str, int]  # collector name -> weight (points on the hash ring)
    prefix: str = DEFAULT_PREFIX
    exchange: str = HASH_EXCHANGE

    def __post_init__(self) -> None:
        for name, weight in self.collectors.items():
            if not name or not isinstance(weight, int) or weight < 1:
                raise ValueError(f"collector {name!r}: weight {weight!r}, expected an int >= 1")


QUEUE_ARGS = {"x-queue-type": "quorum", "x-single-active-consumer": True}


def ensure(channel: BlockingChannel, topology: Topology) -> None:
    """Declare the exchange, its bindings to amq.topic and every collector's queue."""
    channel.exchange_declare(topology.exchange, exchange_type="x-consistent-hash", durable=True)
    for pattern in routing_patterns(topology.prefix):
        channel.exchange_bind(destination=topology.exchange, source="amq.topic",
                              routing_key=pattern)
    for name, weight in topology.collectors.items():
        declare_queue(channel, name)
        # The binding key of a consistent-hash binding is its weight.
        channel.queue_bind(queue_name(name), topology.exchange, routing_key=str(weight))


def declare_queue(channel: BlockingChannel, collector: str) -> None:
    channel.queue_declare(queue_name(collector), durable=True, arguments=QUEUE_ARGS)

