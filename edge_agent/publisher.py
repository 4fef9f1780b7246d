"""Drain the outbox to the broker: MQTT v5 QoS 1, delete only after PUBACK.

paho-mqtt's network thread reconnects with backoff and resends unacknowledged QoS 1
messages; this module decides what to send (oldest first, a bounded window of messages in
flight) and deletes from the outbox when a PUBACK confirms a message.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import random
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from airgrid.wire import (
    SCHEMA_VERSION,
    Status,
    decode_reading,
    encode_status,
    status_topic,
    up_topic,
)
from edge_agent.config import BrokerSettings, PublishSettings
from edge_agent.outbox import Outbox, OutboxWriteFailed

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600


class Publisher:
    def __init__(
        self,
        device: str,
        boot_id: str,
        outbox: Outbox,
        broker: BrokerSettings,
        settings: PublishSettings,
        status: Callable[[], Status],
        hold: Callable[[], bool] | None = None,
    ) -> None:
        self.device = device
        self._hold = hold  # True while readings must wait (clock not yet synchronised)
        self.boot_id = boot_id
        self.outbox = outbox
        self.broker = broker
        self.settings = settings
        self._status = status
        self._acks: queue.SimpleQueue[tuple[int, bool, str]] = queue.SimpleQueue()
        self._inflight: dict[int, tuple[float, list[int]]] = {}  # mid -> (sent at, seqs)
        self._sent_upto = 0
        # Acknowledged batches the outbox could not forget yet (disk full): deleted later,
        # never sent again from here (the broker has them).
        self._undeleted: list[list[int]] = []
        self._connected = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.published_readings = 0
        self.acked_readings = 0
        self.rejected_messages = 0
        self.damaged_rows = 0  # outbox rows that are not a reading: set aside, not sent
        self.epoch = outbox.epoch
        self._endpoints = broker.endpoints()
        self._endpoint = 0
        self.failovers = 0
        self.reconnects = 0
        self._attempt = 0
        self._rng = random.Random()
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        b = self.broker
        if b.protocol == "3.1.1":
            c = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=f"airgrid-edge-{self.device}", protocol=mqtt.MQTTv311,
                clean_session=False,
            )
        else:
            c = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=f"airgrid-edge-{self.device}", protocol=mqtt.MQTTv5,
            )
        if b.username:
            c.username_pw_set(b.username, b.password)
        if b.ca_file:
            c.tls_set(
                ca_certs=b.ca_file, certfile=b.cert_file, keyfile=b.key_file,
                cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        offline = Status(v=SCHEMA_VERSION, device=self.device, state="offline")
        c.will_set(status_topic(self.device, b.prefix), encode_status(offline), qos=1, retain=True)
        self._set_backoff(c)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        return c

    def _set_backoff(self, client: mqtt.Client | None = None) -> float:
        """Exponential backoff with "equal jitter", capped at backoff_max_s.

        Jitter keeps a county's devices from reconnecting in lockstep after a broker
        restart. paho waits `min_delay` before its next attempt once the delay is reset,
        so the delay for the next attempt is set here after every failure.
        """
        s = self.settings
        # with several brokers the delay grows once per round of the list, not per broker
        rounds = self._attempt // len(self._endpoints)
        ceiling = min(s.backoff_max_s, s.backoff_min_s * 2 ** min(rounds, 30))
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        (client or self.client).reconnect_delay_set(delay, delay)
        self._attempt += 1
        return float(delay)

    # --- paho callbacks (network thread) ------------------------------------------------

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        delay = self._set_backoff(client)
        log.warning("cannot reach broker %s:%s; next attempt in %.1f s",
                    client.host, client.port, delay)
        self._next_broker()

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
        reason: ReasonCode, props: Properties | None,
    ) -> None:
        if reason.is_failure:
            delay = self._set_backoff(client)
            log.warning("broker refused connection: %s; next attempt in %.1f s", reason, delay)
            self._next_broker()
            return
        self._attempt = 0
        self._set_backoff(client)
        self.reconnects += 1
        log.info("connected to %s:%s (session present: %s)",
                 client.host, client.port, flags.session_present)
        self._connected.set()
        self.publish_status()
        self._wake.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
        reason: ReasonCode, props: Properties | None,
    ) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            delay = self._set_backoff(client)
            log.warning("disconnected from broker: %s; next attempt in %.1f s", reason, delay)
            self._next_broker()

    def _next_broker(self) -> None:
        """paho reconnects to client.host/port: point it at the next broker of the list."""
        if len(self._endpoints) < 2:
            return
        self._endpoint = (self._endpoint + 1) % len(self._endpoints)
        host, port = self._endpoints[self._endpoint]
        if self._connected.is_set():
            return
        # paho's host/port setters refuse while its loop is reconnecting, but each
        # reconnect attempt reads these two attributes (paho-mqtt 2.1 Client.reconnect).
        self.client._host, self.client._port = host, port
        self.failovers += 1
        log.warning("failing over to broker %s:%s", host, port)

    def _on_publish(
        self, client: mqtt.Client, userdata: object, mid: int,
        reason: ReasonCode, props: Properties | None,
    ) -> None:
        # paho calls this holding its own message lock: hand over, never block here.
        self._acks.put((mid, reason.is_failure, str(reason)))
        self._wake.set()

    # --- control ------------------------------------------------------------------------

    def start(self) -> None:
        host, port = self._endpoints[0]
        if self.broker.protocol == "3.1.1":
            self.client.connect_async(host, port, keepalive=self.broker.keepalive_s)
        else:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            self.client.connect_async(
                host, port, keepalive=self.broker.keepalive_s, clean_start=False,
                properties=props,
            )
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """A new reading was captured."""
        self._wake.set()

    def stop(self, drain_s: float = 0.0) -> None:
        deadline = time.monotonic() + drain_s
        while drain_s and time.monotonic() < deadline and self.outbox.depth():
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._thread.join(5)
        if self._connected.is_set():
            offline = Status(v=SCHEMA_VERSION, device=self.device, state="offline")
            info = self.client.publish(
                status_topic(self.device, self.broker.prefix), encode_status(offline),
                qos=1, retain=True,
            )
            info.wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def inflight(self) -> int:
        return len(self._inflight)

    def publish_status(self) -> None:
        self.client.publish(
            status_topic(self.device, self.broker.prefix), encode_status(self._status()),
            qos=1, retain=True,
        )

    # --- sending loop -------------------------------------------------------------------

    def _run(self) -> None:
        # All in-flight bookkeeping happens on this one thread.
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            self._take_acks()
            if not self._connected.is_set():
                continue
            self._resend_stale()
            while not self._stop.is_set() and self._connected.is_set() and self._send_one():
                self._take_acks()

    def _take_acks(self) -> None:
        while self._undeleted:
            try:
                self.outbox.delete(self._undeleted[0])
            except OutboxWriteFailed:
                break
            self._undeleted.pop(0)
        while True:
            try:
                mid, failed, reason = self._acks.get_nowait()
            except queue.Empty:
                return
            entry = self._inflight.pop(mid, None)
            if entry is None:
                continue
            seqs = entry[1]
            if failed:
                # e.g. 135 not authorized: the broker did not take it; it stays in the
                # outbox and is sent again after resend_after_s.
                self.rejected_messages += 1
                log.error("broker rejected a batch of %d readings (%s)", len(seqs), reason)
                self._sent_upto = min(self._sent_upto, seqs[0] - 1)
                continue
            self.acked_readings += len(seqs)
            try:
                self.outbox.delete(seqs)
            except OutboxWriteFailed as exc:
                if not self._undeleted:
                    log.error("%s; will try again (they are not sent again)", exc)
                self._undeleted.append(seqs)

    def _resend_stale(self) -> None:
        now = time.monotonic()
        stale = [m for m, (t, _) in self._inflight.items()
                 if now - t > self.settings.resend_after_s]
        if stale:
            # Duplicates are harmless (the collector drops repeats by seq); loss is not.
            log.warning("%d batches unacknowledged for %.0f s; sending again",
                        len(stale), self.settings.resend_after_s)
            self._inflight.clear()
            self._sent_upto = 0

    def _batch_payload(self, bodies: list[bytes]) -> bytes:
        """An UpBatch from stored reading bodies, without decoding them again.

        Byte-identical to `encode_up(UpBatch(...))` (msgspec writes fields in
        declaration order: v, device, boot, readings, epoch); test_edge_publisher checks it.
        """
        head = (f'{{"v":{SCHEMA_VERSION},"device":{json.dumps(self.device)},'
                f'"boot":{json.dumps(self.boot_id)},"readings":[').encode()
        return head + b",".join(bodies) + f'],"epoch":{json.dumps(self.epoch)}}}'.encode()

    def _set_aside_damaged(self, rows: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        """Rows whose body is not the reading it should be (a damaged card, a bad write)
        would make the collector reject the whole batch after the PUBACK: each is written
        to `<outbox>.damaged` (one JSON line: seq, body in base64, why), counted, logged and
        deleted; the rest are sent."""
        good: list[tuple[int, bytes]] = []
        damaged: list[tuple[int, bytes, str]] = []
        for seq, body in rows:
            try:
                r = decode_reading(body)
                if r.seq != seq:
                    raise ValueError(f"body has seq {r.seq}")
                good.append((seq, body))
            except Exception as exc:  # whatever is wrong, set it aside
                damaged.append((seq, body, f"{type(exc).__name__}: {exc}"))
        if damaged:
            aside = self.outbox.path.with_name(self.outbox.path.name + ".damaged")
            with aside.open("a", encoding="utf-8") as f:
                for seq, body, why in damaged:
                    f.write(json.dumps({"seq": seq, "why": why, "at_ms": int(time.time() * 1000),
                                        "body_b64": base64.b64encode(body).decode()}) + "\n")
                f.flush()
            self.outbox.delete([seq for seq, _, _ in damaged])
            self.damaged_rows += len(damaged)
            for seq, _, why in damaged:
                log.error("outbox row seq %d is damaged (%s): set aside in %s, not sent",
                          seq, why, aside)
        return good

    def _send_one(self) -> bool:
        if len(self._inflight) >= self.settings.window:
            return False
        if self._hold is not None and self._hold():
            return False
        rows = self.outbox.hand_over(self.settings.batch_max, after_seq=self._sent_upto)
        if not rows:
            return False
        rows = self._set_aside_damaged(rows)
        if not rows:
            return True
        seqs = [seq for seq, _ in rows]
        topic = up_topic(self.device, self.broker.prefix)
        info = self.client.publish(topic, self._batch_payload([b for _, b in rows]), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False  # not connected after all; the readings stay in the outbox
        self._inflight[info.mid] = (time.monotonic(), seqs)
        self._sent_upto = seqs[-1]
        self.published_readings += len(seqs)
        return True
