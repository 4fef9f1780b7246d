"""MQTT v5 clients for the security tests: connect with a device bundle, an account or nothing,
and report what the broker said (never assume a connection succeeded)."""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode


@dataclass
class Session:
    client: mqtt.Client
    outcome: str  # "connected", "refused: <reason>", "error: <exception>"
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    subacks: list[list[int]] = field(default_factory=list)
    pubacks: dict[int, int] = field(default_factory=dict)
    acked: threading.Condition = field(default_factory=threading.Condition)

    @property
    def ok(self) -> bool:
        return self.outcome == "connected"

    def topics(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.messages]

    def publish(self, topic: str, payload: bytes, timeout: float = 5.0) -> int:
        """QoS 1 publish; returns the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1)
        with self.acked:
            self.acked.wait_for(lambda: info.mid in self.pubacks, timeout)
            return self.pubacks[info.mid]

    def subscribe(self, *topics: str, timeout: float = 5.0) -> list[int]:
        """Subscribe at QoS 1; returns the SUBACK's reason codes."""
        before = len(self.subacks)
        self.client.subscribe([(t, 1) for t in topics])
        with self.acked:
            self.acked.wait_for(lambda: len(self.subacks) > before, timeout)
            return self.subacks[-1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(
    port: int, *, client_id: str = "", ca: Path | None = None, cert: Path | None = None,
    key: Path | None = None, username: str | None = None, password: str | None = None,
    timeout: float = 5.0,
) -> Session:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv5)
    if ca is not None:
        c.tls_set(ca_certs=str(ca), certfile=str(cert) if cert else None,
                  keyfile=str(key) if key else None, cert_reqs=ssl.CERT_REQUIRED,
                  tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if username is not None:
        c.username_pw_set(username, password)
    s = Session(c, "pending")
    done = threading.Event()

    def on_connect(cl: mqtt.Client, u: object, flags: object, rc: ReasonCode,
                   props: object) -> None:
        s.outcome = f"refused: {rc}" if rc.is_failure else "connected"
        done.set()

    def on_disconnect(cl: mqtt.Client, u: object, flags: object, rc: ReasonCode,
                      props: object) -> None:
        if not done.is_set():
            s.outcome = f"error: disconnected ({rc})"
            done.set()

    def on_message(cl: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with s.lock:
            s.messages.append((msg.topic, bytes(msg.payload)))

    def on_publish(cl: mqtt.Client, u: object, mid: int, rc: ReasonCode, props: object) -> None:
        with s.acked:
            s.pubacks[mid] = rc.value
            s.acked.notify_all()

    def on_subscribe(cl: mqtt.Client, u: object, mid: int, rcs: list[ReasonCode],
                     props: object) -> None:
        with s.acked:
            s.subacks.append([r.value for r in rcs])
            s.acked.notify_all()

    c.on_connect, c.on_disconnect, c.on_message = on_connect, on_disconnect, on_message
    c.on_publish, c.on_subscribe = on_publish, on_subscribe
    try:
        c.connect("127.0.0.1", port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        s.outcome = f"error: {exc}"
        return s
    c.loop_start()
    if not done.wait(timeout):
        s.outcome = "error: no CONNACK"
    if not s.ok:
        c.loop_stop()
    return s


def device(port: int, bundle: Path, **kw: object) -> Session:
    """Connect with a device bundle's CA, certificate and key."""
    return connect(port, ca=bundle / "ca.crt", cert=bundle / "device.crt",
                   key=bundle / "device.key", **kw)  # type: ignore[arg-type]
