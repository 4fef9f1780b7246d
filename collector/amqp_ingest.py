"""AMQP ingest from a collector's RabbitMQ quorum queue (the province's source).

Same contract as `MqttIngest` (see `collector.ingest_source`): manual acks, sent only
after the pipeline has stored a batch; the channel's prefetch bounds what is
unacknowledged (back-pressure); a delivery from an older connection is never acked, the
queue redelivers it and dedup by (device, seq) drops the repeat.

pika's BlockingConnection is not thread-safe, so everything runs on the caller's thread:
`take` drives the connection's I/O, `ack` and `publish` use the same channel.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from collector import amqp_topology
from collector.delivery import Delivery

log = logging.getLogger(__name__)

# rabbitmq_mqtt 3.10 turns an MQTT topic's `/` into `.` (and back for subscribers); a `.`
# inside a level is left alone, so `airgrid/v1/dev/a.b/up` arrives as
# `airgrid.v1.dev.a.b.up`. Device ids never contain `/` (wire.DEVICE_ID_RE), so the words
# between `dev` and the last one are the device id.

#: Connection errors after which we reconnect (and never ack what came before).
_LOST = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError,
         pika.exceptions.StreamLostError, OSError)


def topic_from_routing_key(key: str) -> str:
    words = key.split(".")
    if len(words) >= 5 and words[1:3] == ["v1", "dev"]:
        return "/".join([*words[:3], ".".join(words[3:-1]), words[-1]])
    return key.replace(".", "/")


def routing_key_from_topic(topic: str) -> str:
    return topic.replace("/", ".")


class AmqpIngest:
    def __init__(
        self, urls: list[str], collector: str, prefetch: int,
        topology: amqp_topology.Topology | None = None, heartbeat_s: int = 30,
        queues: int = 1,
    ) -> None:
        if not urls:
            raise ValueError("AmqpIngest needs at least one AMQP URL")
        self.urls = list(urls)
        self.collector = collector
        self.queues = topology.queues_per_collector if topology is not None else queues
        self.queue_names = amqp_topology.queue_names(collector, self.queues)
        self._topology_ensured = False
        self.connected = threading.Event()  # as MqttIngest's: the pipeline's health reads it
        self.prefetch = prefetch
        self.topology = topology
        self.heartbeat_s = heartbeat_s
        self.generation = 0
        self.reconnects = 0
        self._conn: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._buffer: list[Delivery] = []
        self._unsent: list[tuple[str, bytes, int]] = []  # publishes waiting for a connection
        self._next_url = 0
        self._retry_at = 0.0

    def waiting(self) -> int:
        """Deliveries received and not yet taken."""
        return len(self._buffer)

    def start(self) -> None:
        self._connect()

    def stop(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        self.connected.clear()
        if conn is not None and conn.is_open:
            with contextlib.suppress(*_LOST):
                conn.close()

    def _connect(self) -> bool:
        """Try each node once, starting after the last one used; False if none answers."""
        for i in range(len(self.urls)):
            url = self.urls[(self._next_url + i) % len(self.urls)]
            params = pika.URLParameters(url)
            params.heartbeat = self.heartbeat_s
            params.connection_attempts = 1
            params.socket_timeout = 5
            started = time.monotonic()
            try:
                conn = pika.BlockingConnection(params)
                opened = time.monotonic()
                ch = conn.channel()
                if self.topology is not None and not self._topology_ensured:
                    amqp_topology.ensure(ch, self.topology, own=self.collector)
                    self._topology_ensured = True
                    self._consume(ch)
                else:
                    # A reconnect (often after a node loss) consumes straight away: the
                    # queues outlive a node, and each declare waits for its queue's
                    # leader, busy electing then. A queue that is gone is declared.
                    try:
                        self._consume(ch)
                    except pika.exceptions.ChannelClosedByBroker as exc:
                        if exc.reply_code != 404:
                            raise
                        ch = conn.channel()
                        if self.topology is not None:  # with its bindings, gone with it
                            amqp_topology.ensure(ch, self.topology, own=self.collector)
                        else:
                            amqp_topology.declare_queues(ch, self.collector, self.queues)
                        self._consume(ch)
            except _LOST as exc:
                log.warning("AMQP %s:%s unavailable: %s", params.host, params.port, exc)
                continue
            self._next_url = (self._next_url + i) % len(self.urls)
            self._conn, self._channel = conn, ch
            self.generation += 1  # what was taken before is redelivered; never ack it
            self._buffer.clear()
            self.connected.set()
            log.info("consuming %s on %s:%s (connected in %.1f s, consuming after %.1f s)",
                     " ".join(self.queue_names), params.host, params.port,
                     opened - started, time.monotonic() - opened)
            self._flush_unsent()
            return True
        return False

    def _consume(self, ch: BlockingChannel) -> None:
        # the prefetch bounds all of the collector's queues together (quorum queues have
        # no channel-wide prefetch: each consumer takes its part)
        ch.basic_qos(prefetch_count=max(1, self.prefetch // self.queues))
        for name in self.queue_names:
            ch.basic_consume(name, self._on_message, auto_ack=False)

    def _lost(self, exc: BaseException) -> None:
        log.warning("AMQP connection lost: %s", exc)
        self._conn, self._channel = None, None
        self.connected.clear()
        self._buffer.clear()
        self._next_url += 1  # the node may be gone: start with the next one
        self.reconnects += 1

    def _on_message(self, ch: BlockingChannel, method: Basic.Deliver,
                    props: BasicProperties, body: bytes) -> None:
        assert method.delivery_tag is not None and method.routing_key is not None
        self._buffer.append(Delivery(topic_from_routing_key(method.routing_key), body,
                                     method.delivery_tag, 1, self.generation))

    def take(self, max_messages: int, max_wait_s: float) -> list[Delivery]:
        """Up to max_messages; waits max_wait_s for the first, then takes what is there."""
        deadline = time.monotonic() + max_wait_s
        if self._conn is None and (time.monotonic() < self._retry_at or not self._connect()):
            self._retry_at = time.monotonic() + 1.0
            time.sleep(max(0.0, deadline - time.monotonic()))
            return []
        assert self._conn is not None
        try:
            self._conn.process_data_events(0)
            while not self._buffer and time.monotonic() < deadline:
                self._conn.process_data_events(max(0.0, deadline - time.monotonic()))
        except _LOST as exc:
            self._lost(exc)
            return []
        out, self._buffer = self._buffer[:max_messages], self._buffer[max_messages:]
        return out

    def ack(self, deliveries: list[Delivery]) -> int:
        """Ack what is stored; returns how many were from an older connection."""
        stale = 0
        for d in deliveries:
            if d.generation != self.generation or self._channel is None:
                stale += 1
                continue
            try:
                self._channel.basic_ack(d.mid)
            except _LOST as exc:
                self._lost(exc)
                stale += 1
        return stale

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """To amq.topic, where MQTT subscribers see it under `topic`. AMQP has no retained
        messages: `retain` is ignored. Kept in memory until a connection takes it."""
        self._unsent.append((routing_key_from_topic(topic), payload, qos))
        if self._channel is not None:
            self._flush_unsent()

    def _flush_unsent(self) -> None:
        while self._unsent and self._channel is not None:
            key, payload, qos = self._unsent[0]
            props = BasicProperties(delivery_mode=2 if qos else 1)
            try:
                self._channel.basic_publish("amq.topic", key, payload, props)
            except _LOST as exc:
                self._lost(exc)
                return
            self._unsent.pop(0)
