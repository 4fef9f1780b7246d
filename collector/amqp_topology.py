"""RabbitMQ topology for a province: each device's messages to one collector's queue.

    amq.topic ──(airgrid.v1.dev.*.up / .status)──▶ airgrid.devices (x-consistent-hash)
                                                 ──weight──▶ airgrid.collector.<name> (quorum)

The MQTT plugin publishes every MQTT message to `amq.topic` with the topic's `/` turned
into `.`, so a device's `up` topic becomes the routing key `airgrid.v1.dev.<device>.up`.
The consistent-hash exchange (RabbitMQ 3.10) gives each bound queue `weight` buckets,
numbered in binding order, and picks a bucket by jump consistent hash of the routing key.
Adding a queue appends buckets, so only the keys that now land in them move (about 1/N of
the devices, all to the new queue); unbinding a queue renumbers every bucket after its
own, so removing any but the queue bound last moves most devices (70 % on removing the
second of five: docs/province.md). A device's `up` and `status` keys hash independently:
status carries no per-device rule state, so where it is stored does not matter.

A collector may hold several queues (`queues_per_collector`, all bound with its weight):
its share of the ring is the same, each queue has fewer publishers. Every declaration
here is idempotent (declare/bind of what exists is a no-op), so each
collector runs `ensure` at start-up from its own config. Queues are quorum queues
(replicated by Raft over the cluster's nodes) with single active consumer, so a restarted
collector never consumes side by side with its stale connection.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from airgrid.wire import DEFAULT_PREFIX

log = logging.getLogger(__name__)

HASH_EXCHANGE = "airgrid.devices"
QUEUE_PREFIX = "airgrid.collector."
MAX_QUEUES_PER_COLLECTOR = 64
NOT_FOUND = 404  # AMQP reply code


def queue_name(collector: str, shard: int = 0) -> str:
    """A collector's queue; shard i > 0 of a collector with several is NAME/i."""
    return QUEUE_PREFIX + collector + (f"/{shard}" if shard else "")


def queue_names(collector: str, queues: int = 1) -> list[str]:
    """All of a collector's queues (`queues_per_collector`), shard 0 first."""
    return [queue_name(collector, i) for i in range(queues)]


def routing_patterns(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """amq.topic patterns carrying device traffic (`#`: a dotted device id is several
    words, since rabbitmq_mqtt 3.10 leaves a `.` inside a topic level as it is)."""
    return [f"{prefix}.v1.dev.#.up", f"{prefix}.v1.dev.#.status"]


@dataclass(frozen=True)
class Topology:
    collectors: Mapping[str, int]  # collector name -> weight (its buckets in the exchange)
    prefix: str = DEFAULT_PREFIX
    exchange: str = HASH_EXCHANGE
    # Each collector's devices over this many quorum queues, each bound with the
    # collector's weight. After a node loss a quorum queue marks the lost node's
    # publishers one `down` command at a time, each a pass over all its publishers: work
    # that grows with the square of a queue's publishers (docs/province.md).
    queues_per_collector: int = 1

    def __post_init__(self) -> None:
        for name, weight in self.collectors.items():
            if not name or not isinstance(weight, int) or weight < 1:
                raise ValueError(f"collector {name!r}: weight {weight!r}, expected an int >= 1")
        if not 1 <= self.queues_per_collector <= MAX_QUEUES_PER_COLLECTOR:
            raise ValueError(f"queues_per_collector {self.queues_per_collector!r}: "
                             f"expected 1..{MAX_QUEUES_PER_COLLECTOR}")


#: Arguments of queues declared before leaders were spread (client-local leaders).
LEGACY_QUEUE_ARGS = {"x-queue-type": "quorum", "x-single-active-consumer": True}
#: A quorum queue's leader goes to the node of the declaring connection by default
#: (`client-local`), so one collector declaring every queue put all their leaders on
#: one node, and a node kill stopped all of a collector's queues at once while new
#: leaders were elected. `balanced` (RabbitMQ 3.10: the node with fewest leaders, or a
#: random one past 1,000 queues) spreads each collector's queues over the nodes.
QUEUE_ARGS = {**LEGACY_QUEUE_ARGS, "x-queue-leader-locator": "balanced"}
PRECONDITION_FAILED = 406  # AMQP reply code: a declare's arguments differ from the queue's


def ensure(channel: BlockingChannel, topology: Topology, own: str | None = None) -> None:
    """Declare the exchange, its bindings to amq.topic and every collector's queue, in the
    collectors table's order (the exchange numbers its buckets in binding order).

    With `own`, the other collectors' queues are only bound when they exist, and declared
    only when they do not: `queue.declare` of an existing quorum queue asks its leader for
    its counts, and after a node loss the leaders are busy for a long time (a collector
    added then took a minute to start); a binding does not ask the queue."""
    channel.exchange_declare(topology.exchange, exchange_type="x-consistent-hash", durable=True)
    for pattern in routing_patterns(topology.prefix):
        channel.exchange_bind(destination=topology.exchange, source="amq.topic",
                              routing_key=pattern)
    k = topology.queues_per_collector
    for name, weight in topology.collectors.items():
        # The binding key of a consistent-hash binding is its weight.
        if own is not None and name != own and _bind_existing(channel, topology.exchange,
                                                              queue_names(name, k), weight):
            continue
        for queue in declare_queues(channel, name, k):
            channel.queue_bind(queue, topology.exchange, routing_key=str(weight))


def _bind_existing(channel: BlockingChannel, exchange: str, queues: list[str],
                   weight: int) -> bool:
    """Bind queues that exist (on a channel of their own: a missing one closes it with
    404); False if one is missing."""
    probe = channel.connection.channel()
    try:
        for queue in queues:
            probe.queue_bind(queue, exchange, routing_key=str(weight))
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != NOT_FOUND:
            raise
        return False
    probe.close()
    return True


def declare_queues(channel: BlockingChannel, collector: str, queues: int = 1) -> list[str]:
    """Declare a collector's queues; their names.

    A queue declared before the leader locator was set (an upgraded province) has other
    arguments, and RabbitMQ refuses a declare whose arguments differ (406, closing the
    channel): it is declared again, on a channel of its own, with the arguments it has.
    It keeps its leader where it is until it is deleted and declared again."""
    names = queue_names(collector, queues)
    for name in names:
        probe = channel.connection.channel()
        try:
            probe.queue_declare(name, durable=True, arguments=QUEUE_ARGS)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != PRECONDITION_FAILED:
                raise
            log.warning("queue %s was declared without a leader locator (%s): kept as it "
                        "is; delete it when drained to spread its leader", name,
                        exc.reply_text)
            probe = channel.connection.channel()
            probe.queue_declare(name, durable=True, arguments=LEGACY_QUEUE_ARGS)
        probe.close()
    return names

