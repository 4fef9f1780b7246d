"""MQTT channel and acknowledgements against a real Mosquitto: CloudEvents on
airgrid/v1/alerts/..., retained current state, app notifications, acks by MQTT and HTTP."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from collector.alerting.channels.notifier import Context
from collector.alerting.service import AlertingService
from orchestration.services import Mosquitto
from tests.support.alerting import (
    PRINCIPALS,
    TOKEN_APP_ZHANG,
    TOKEN_LI,
    TOKEN_OFFICER,
    TOKEN_ZHANG,
    config,
    tr,
)
from tests.support.wait import wait_for


class Watcher:
    def __init__(self, port: int, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        c.on_message = self._on
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.connect("127.0.0.1", port)
        c.subscribe([(t, 1) for t in topics])
        c.loop_start()
        self.client = c
        assert self.subscribed.wait(5)

    def _on(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def events(self, prefix: str = "airgrid/v1/alerts/") -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(p) for t, p, _ in self.messages if t.startswith(prefix)]

    def close(self) -> None:
        self.client.disconnect()  # first, so the loop thread wakes and ends at once
        self.client.loop_stop()


@pytest.fixture
def service(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[AlertingService]:
    cfg = config(
        tmp_path,
        channels={"app": {"type": "mqtt"}},
        receivers={"grid_worker": {"targets": [{"channel": "app", "to": "grid_worker"}]}},
        route={"receiver": "grid_worker", "group_wait": "0s"},
        ack={"principals": PRINCIPALS, "http_port": 0, "mqtt": True},
    )
    svc = AlertingService(cfg, Context(file="t", broker_port=mosquitto.port))
    svc.start()
    assert wait_for(lambda: all(getattr(n, "connected").is_set()  # noqa: B009
                                for n in svc.notifiers.values()), 5)
    yield svc
    svc.stop()


def test_events_retained_state_and_app_notification(service: AlertingService,
                                                    mosquitto: Mosquitto) -> None:
    w = Watcher(mosquitto.port, ["airgrid/v1/alerts/#", "airgrid/v1/notify/#"])
    try:
        now = int(time.time() * 1000)
        service.handle([tr("dev-a", "pending", 170.0, now - 1000),
                        tr("dev-a", "firing", 186.0, now), tr("dev-c", "firing", 20.0, now)],
                       now)
        assert wait_for(lambda: len(w.events()) == 2 and len(w.events("airgrid/v1/notify/")) == 2)
        ev = {e["subject"]: e for e in w.events()}["dev-a"]
        assert ev["specversion"] == "1.0" and ev["type"] == "org.airgrid.alert.firing"
        assert ev["data"]["state"] == "firing" and ev["data"]["value"] == 186.0
        assert ev["data"]["labels"]["township"] == "城关镇" and ev["data"]["alert_id"] == 1
        assert "请回复“收到 1”确认" in ev["data"]["text"]
        notes = {n["data"]["firing"][0]["device"]: n for n in w.events("airgrid/v1/notify/")}
        assert set(notes) == {"dev-a", "dev-c"}
        with w.lock:
            topics = {t for t, _, _ in w.messages if "/notify/" in t}
        assert topics == {"airgrid/v1/notify/app-zhang", "airgrid/v1/notify/app-li"}

        # A newly connected app sees what is open from the retained state topics.
        late = Watcher(mosquitto.port, ["airgrid/v1/alert-state/#"])
        assert wait_for(lambda: len(late.events("airgrid/v1/alert-state/")) == 2)
        assert all(r for _, _, r in late.messages)
        late.close()

        service.handle([tr("dev-a", "resolved", 100.0, now + 5000)], now + 5000)
        assert wait_for(lambda: any(e["type"].endswith(".resolved") for e in w.events()))
        later = Watcher(mosquitto.port, ["airgrid/v1/alert-state/#"])
        time.sleep(0.5)
        states = later.events("airgrid/v1/alert-state/")
        assert [s["subject"] for s in states] == ["dev-c"]  # dev-a's state was cleared
        later.close()
    finally:
        w.close()


def test_ack_by_mqtt_command_topic_is_itself_an_event(service: AlertingService,
                                                      mosquitto: Mosquitto) -> None:
    w = Watcher(mosquitto.port, ["airgrid/v1/alerts/#"])
    try:
        now = int(time.time() * 1000)
        service.handle([tr("dev-a", "firing", 186.0, now)], now)
        assert wait_for(lambda: len(w.events()) == 1)
        pub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        pub.publish("airgrid/v1/cmd/alerts/1/ack", json.dumps({"by": "张三"}), qos=1)
        pub.publish("airgrid/v1/cmd/alerts/1/ack", b"not json", qos=1)
        # 李四 holds a valid token, but dev-a is 张三's: refused
        pub.publish("airgrid/v1/cmd/alerts/1/ack",
                    json.dumps({"by": "张三", "token": TOKEN_LI}).encode(), qos=1)
        pub.publish("airgrid/v1/cmd/alerts/1/ack",
                    json.dumps({"by": "x", "token": TOKEN_APP_ZHANG}).encode(),
                    qos=1).wait_for_publish(5)
        assert wait_for(lambda: any(e["type"].endswith(".acknowledged") for e in w.events()))
        pub.disconnect()
        pub.loop_stop()
        ack = [e for e in w.events() if e["type"].endswith(".acknowledged")]
        # the token's holder is recorded, not what "by" claims
        assert len(ack) == 1 and ack[0]["data"]["acked_by"] == "张三的网格通"
        assert ack[0]["data"]["via"] == "mqtt"
        # the first (no token) and second (not JSON) were rejected, the third refused
        assert service.manager.counters["ack_mqtt_rejected"] == 2
        assert service.manager.counters["ack_refused_mqtt"] == 2
    finally:
        w.close()


def _post(url: str, token: str | None, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_ack_and_silence_by_http_with_token(service: AlertingService, mosquitto: Mosquitto) -> None:
    w = Watcher(mosquitto.port, ["airgrid/v1/alerts/#"])
    try:
        now = int(time.time() * 1000)
        service.handle([tr("dev-a", "firing", 186.0, now)], now)
        assert service.http is not None
        base = f"http://127.0.0.1:{service.http.port}/api/alerts"
        assert _post(f"{base}/1/ack", None)[0] == 401
        assert _post(f"{base}/1/ack", "wrong")[0] == 401
        assert _post(f"{base}/42/ack", TOKEN_ZHANG)[0] == 404
        assert _post(f"{base}/1/ack", TOKEN_ZHANG, b"[1")[0] == 400
        # 李四 is dev-c's worker, not dev-a's: 403, counted, not acknowledged
        assert _post(f"{base}/1/ack", TOKEN_LI, json.dumps({"by": "张三"}).encode())[0] == 403
        assert service.manager.counters["ack_refused_http"] == 1
        assert service.manager.get(1).acked_by is None  # type: ignore[union-attr]
        # the township officer above 张三 may; the history names the token's holder
        code, body = _post(f"{base}/1/ack", TOKEN_OFFICER, json.dumps({"by": "王五"}).encode())
        assert code == 200 and body["acked_by"] == "王镇长" and body["alert_id"] == 1
        assert wait_for(lambda: any(e["type"].endswith(".acknowledged") for e in w.events()))

        # a silence through the same API mutes the next alert's event
        api = f"http://127.0.0.1:{service.http.port}/api/silences"
        silence = {"matchers": {"device": "dev-c"}, "ends": now + 3_600_000,
                   "author": "王工", "reason": "更换传感器"}
        assert _post(api, None, json.dumps(silence).encode())[0] == 401
        assert _post(api, TOKEN_ZHANG, json.dumps({**silence, "ends": 0}).encode())[0] == 400
        code, body = _post(api, TOKEN_ZHANG, json.dumps(silence).encode())
        assert code == 201 and body["id"] == 1
        service.handle([tr("dev-c", "firing", 170.0, now + 1000)], now + 1000)
        assert wait_for(lambda: any(e["subject"] == "dev-c" for e in w.events()))
        (ev,) = [e for e in w.events() if e["subject"] == "dev-c"]
        assert ev["data"]["muted"] == "silence 1: 更换传感器"
    finally:
        w.close()


def test_a_dead_letter_is_also_told_on_the_dead_letter_topic(tmp_path: Path,
                                                             mosquitto: Mosquitto) -> None:
    from orchestration.services import free_port

    closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: connection refused
    cfg = config(tmp_path, channels={"hook": {
        "type": "webhook", "url": closed, "secret": "0123456789abcdef", "max_attempts": 2,
        "backoff": "50ms"}},
        receivers={"ops": {"targets": [{"channel": "hook"}]}},
        route={"receiver": "ops", "group_wait": "0s"})
    svc = AlertingService(cfg, Context(file="t", broker_port=mosquitto.port))
    w = Watcher(mosquitto.port, ["airgrid/v1/deadletter"])
    svc.start()
    try:
        now = int(time.time() * 1000)
        svc.handle([tr("dev-a", "firing", 186.0, now)], now)
        assert wait_for(lambda: len(w.events("airgrid/v1/deadletter")) == 1)
    finally:
        svc.stop()
        w.close()
    dl = w.events("airgrid/v1/deadletter")[0]
    assert dl["reason"] == "alert_undelivered" and dl["channel"] == "hook"
    assert dl["attempts"] == 2 and "Connection refused" in dl["detail"]
    assert svc.stats.dead["hook"] == 1 and svc.stats.sent["bus"] == 1


def test_refused_http_requests_are_counted_with_the_acknowledgements(
        service: AlertingService) -> None:
    import socket

    assert service.http is not None
    for length in (b"-1", b"157286400"):
        with socket.create_connection(("127.0.0.1", service.http.port), timeout=5) as s:
            s.sendall(b"POST /api/silences HTTP/1.1\r\nAuthorization: Bearer "
                      + TOKEN_ZHANG.encode() + b"\r\nContent-Length: " + length + b"\r\n\r\n")
            assert s.recv(100).split(b" ")[1] in (b"400", b"413")
    assert service.manager.counters["http_bad_length"] == 1
    assert service.manager.counters["http_too_large"] == 1
