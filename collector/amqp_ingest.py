"""AMQP ingest from a collector's RabbitMQ quorum queue (the province's source).

Same contract as `MqttIngest` (see `collector.ingest_source`): manual acks, sent only
after the pipeline has stored a batch; the channel's prefetch bounds what is
unacknowledged (back-pressure); a delivery from an older connection is never acked, the
queue redelivers it and dedup by (device, seq) drops the repeat.

pika's BlockingConnection is not thread-safe, so everything runs on the caller's thread:
`take` drives the connection's I/O, `ack` and `publish` use its channels.

Each queue is consumed on a channel of its own, and its `basic.consume` is sent without
waiting for the answer: a consume on a quorum queue waits for the queue's leader, and
after a node loss the queues led from the lost node elect new leaders for seconds to
minutes. With one channel and blocking consumes, the first such queue held every queue
of the collector (and, on the broker, the channel process) until its election ended;
now the queues whose leaders live flow at once (their leaders are spread over the nodes:
`amqp_topology.QUEUE_ARGS`).
"""

from __future__ import annotations

import contextlib
import functools
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

#: How long a (re)connect waits for its consumes to be answered before taking what
#: flows: a queue that is gone answers at once (404: declared again here), one whose
#: leader is being elected answers when it has one, and is consumed from then on.
CONSUME_SETTLE_S = 1.0

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
        self._channel: BlockingChannel | None = None  # publishes (and the topology)
        self._consuming: list[BlockingChannel] = []  # one per queue, in queue order
        self._consume_ok: set[int] = set()  # queues whose consume was answered
        self._closed: dict[int, BaseException] = {}  # consuming channels closed by the broker
        self._consume_sent = 0.0
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
        conn, self._conn, self._channel, self._consuming = self._conn, None, None, []
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
            conn: pika.BlockingConnection | None = None
            try:
                conn = pika.BlockingConnection(params)
                opened = time.monotonic()
                ch = conn.channel()
                if self.topology is not None and not self._topology_ensured:
                    amqp_topology.ensure(ch, self.topology, own=self.collector)
                    self._topology_ensured = True
                # A reconnect (often after a node loss) consumes straight away: the
                # queues outlive a node, and each declare waits for its queue's leader,
                # busy electing then. A queue that is gone is declared (`_settle`).
                self.generation += 1  # what was taken before is redelivered; never ack it
                self._conn, self._channel = conn, ch
                self._buffer.clear()
                self._consume_all(conn)
                self._settle(CONSUME_SETTLE_S)
            except _LOST as exc:
                log.warning("AMQP %s:%s unavailable: %s", params.host, params.port, exc)
                self._conn, self._channel, self._consuming = None, None, []
                with contextlib.suppress(*_LOST):
                    if conn is not None and conn.is_open:
                        conn.close()
                conn = None
                continue
            self._next_url = (self._next_url + i) % len(self.urls)
            self.connected.set()
            log.info("consuming %d of %s on %s:%s (connected in %.1f s, after %.1f s)",
                     len(self._consume_ok), " ".join(self.queue_names), params.host,
                     params.port, opened - started, time.monotonic() - opened)
            self._flush_unsent()
            return True
        return False

    def _consume_all(self, conn: pika.BlockingConnection) -> None:
        self._consuming, self._consume_ok, self._closed = [], set(), {}
        self._consume_sent = time.monotonic()
        for shard in range(self.queues):
            self._consuming.append(self._consume(conn, shard))

    def _consume(self, conn: pika.BlockingConnection, shard: int) -> BlockingChannel:
        """Consume one queue on a channel of its own, without waiting for the answer."""
        ch = conn.channel()
        # the prefetch bounds all of the collector's queues together (quorum queues have
        # no channel-wide prefetch: each consumer takes its part)
        ch.basic_qos(prefetch_count=max(1, self.prefetch // self.queues))
        # The blocking channel's basic_consume waits for consume-ok; its underlying
        # channel sends it and calls back (during `process_data_events`, on this thread).
        # (pika's blocking adapter has no public non-blocking consume)
        impl = ch._impl
        impl.add_on_close_callback(functools.partial(self._on_closed, self.generation, shard))
        impl.basic_consume(self.queue_names[shard],
                           functools.partial(self._on_message, shard), auto_ack=False,
                           callback=functools.partial(self._on_consume_ok, self.generation,
                                                      shard))
        return ch

    def _on_consume_ok(self, generation: int, shard: int, _frame: object) -> None:
        if generation != self.generation:
            return
        self._consume_ok.add(shard)
        waited = time.monotonic() - self._consume_sent
        if waited > CONSUME_SETTLE_S:
            log.info("consuming %s (its consume answered after %.1f s)",
                     self.queue_names[shard], waited)

    def _on_closed(self, generation: int, shard: int, _channel: object,
                   reason: BaseException) -> None:
        if generation == self.generation and self._conn is not None:
            self._closed[shard] = reason

    def _settle(self, wait_s: float) -> None:
        """Drive the connection until every consume is answered (at most wait_s), then
        declare again (with bindings) the queues that are gone, and consume them."""
        assert self._conn is not None
        deadline = time.monotonic() + wait_s
        while (len(self._consume_ok) + len(self._closed) < self.queues
               and time.monotonic() < deadline):
            self._conn.process_data_events(min(0.05, max(0.0, deadline - time.monotonic())))
        self._redeclare_gone()

    def _redeclare_gone(self) -> None:
        if not self._closed:
            return
        closed, self._closed = self._closed, {}
        for shard, reason in closed.items():
            if not (isinstance(reason, pika.exceptions.ChannelClosedByBroker)
                    and reason.reply_code == amqp_topology.NOT_FOUND):
                # start over on a new connection; this one (and its other consumers,
                # which single active consumer would keep active) is closed first
                if self._conn is not None and self._conn.is_open:
                    with contextlib.suppress(*_LOST):
                        self._conn.close()
                raise pika.exceptions.ChannelClosed(0, f"{self.queue_names[shard]}: {reason}")
        assert self._conn is not None and self._channel is not None
        ch = self._channel
        if self.topology is not None:  # with its bindings, gone with the queue
            amqp_topology.ensure(ch, self.topology, own=self.collector)
        else:
            amqp_topology.declare_queues(ch, self.collector, self.queues)
        log.info("declared again %s: gone while this collector was away",
                 " ".join(self.queue_names[s] for s in sorted(closed)))
        for shard in closed:
            self._consuming[shard] = self._consume(self._conn, shard)

    def _lost(self, exc: BaseException) -> None:
        log.warning("AMQP connection lost: %s", exc)
        self._conn, self._channel, self._consuming = None, None, []
        self.connected.clear()
        self._buffer.clear()
        self._next_url += 1  # the node may be gone: start with the next one
        self.reconnects += 1

    def _on_message(self, shard: int, ch: object, method: Basic.Deliver,
                    props: BasicProperties, body: bytes) -> None:
        assert method.delivery_tag is not None and method.routing_key is not None
        self._buffer.append(Delivery(topic_from_routing_key(method.routing_key), body,
                                     method.delivery_tag, 1, self.generation, shard))

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
            self._redeclare_gone()  # a consume answered 404 after the connect's wait
        except _LOST as exc:
            self._lost(exc)
            return []
        out, self._buffer = self._buffer[:max_messages], self._buffer[max_messages:]
        return out

    def ack(self, deliveries: list[Delivery]) -> int:
        """Ack what is stored; returns how many were from an older connection."""
        stale = 0
        for d in deliveries:
            if d.generation != self.generation or d.channel >= len(self._consuming):
                stale += 1
                continue
            try:
                self._consuming[d.channel].basic_ack(d.mid)
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
