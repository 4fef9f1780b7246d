"""The collector with alerting, as a process, against hostile input on its alerting
boundary: regexes in silences, HTTP clients that misbehave, acknowledgements from the
wrong person (HTTP, MQTT, SMS from the simulated GSM modem). One stack for the module:
real Mosquitto, real InfluxDB, the collector process, the modem on a pseudo-terminal."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_sim.gsm_modem import GsmModem
from orchestration.services import InfluxDB, Mosquitto, free_port
from tests.support.alerting import (
    CONTACTS,
    OFFICER,
    PM25_HEAVY_RULES,
    TOKEN_LI,
    TOKEN_OFFICER,
    TOKEN_ZHANG,
    WORKER,
    WORKER_B,
    modem_sim,
    sms_only,
    toml_entries,
)
from tests.support.collector_process import (
    Collector,
    TopicWatcher,
    count,
    publish_up,
    reading,
)
from tests.support.integration import process_fixture
from tests.support.wait import wait_for

# fullmatch of (a+)+$ against 38 "a" and a "-": 2^38 paths for a backtracking engine
EVIL_DEVICE = "a" * 38 + "-"
EVIL_SILENCE = {"matchers": {"device": "~(a+)+$"}, "reason": "维护"}
REQUEST_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 8


HOSTILE_HTTP_CONTACTS = [
    sms_only(CONTACTS["devices"][0]),
    {"device": "dev-d", "name": "城关中学", "township": "城关镇", "grid": "g1",
     "worker_name": "张三", "worker_phone": "13800000001"},
    sms_only(CONTACTS["devices"][2]),
]


def _alerting(modem: str, http_port: int) -> str:
    return f"""
[rules]
files = ["rules.yaml"]
tick_interval_s = 0.2
[alerting]
language = "zh"
[alerting.ack]
http_port = {http_port}
http_max_connections = {MAX_CONNECTIONS}
http_request_timeout = "{int(REQUEST_TIMEOUT_S * 1000)}ms"
{toml_entries("alerting.ack.principals",
               {"name": "张三", "phone": WORKER, "token": TOKEN_ZHANG},
               {"name": "李四", "phone": "138 0000 0002", "token": TOKEN_LI},
               {"name": "王镇长", "phone": OFFICER, "token": TOKEN_OFFICER})}
[alerting.channels.modem]
type = "sms_modem"
port = "{modem}"
timeout_s = 5.0
[alerting.receivers.grid_worker]
targets = [{{ channel = "modem", to = "grid_worker" }}]
[alerting.route]
receiver = "grid_worker"
group_wait = "0s"
{toml_entries("alerting.contacts.devices", *HOSTILE_HTTP_CONTACTS)}
{toml_entries("alerting.contacts.officers", CONTACTS["officers"][0])}"""


@dataclass
class Stack:
    broker: Mosquitto
    influx: InfluxDB
    db: str
    collector: Collector
    modem: GsmModem
    api: str
    bus: TopicWatcher

    def alert_events(self, state: str, device: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.bus.decoded() if e["data"]["state"] == state
                and (device is None or e["subject"] == device)]


@process_fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory,
          shared_influxdb: InfluxDB) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("hostile-alerting")
    broker = Mosquitto(tmp / "mosquitto")
    broker.start()
    db = f"hostile_alerting_{time.monotonic_ns()}"
    bus = TopicWatcher(broker.port, "airgrid/v1/alerts/#")
    with modem_sim(tmp) as modem:
        http_port = free_port()
        work = tmp / "collector"
        work.mkdir()
        (work / "rules.yaml").write_text(PM25_HEAVY_RULES)
        col = Collector(work, broker.port, shared_influxdb.url, db,
                        extra=_alerting(modem.port.path, http_port))
        col.start()
        try:
            yield Stack(broker, shared_influxdb, db, col, modem,
                        f"http://127.0.0.1:{http_port}", bus)
        finally:
            col.stop()
            bus.close()
            broker.stop()


def _post(url: str, token: str | None, body: object) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body, ensure_ascii=False).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _raw(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send `request` as is; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(OSError):  # the server may answer before reading it all
            s.sendall(request)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return int(answer.split(b" ", 2)[1])


def _port(stack: Stack) -> int:
    return int(stack.api.rsplit(":", 1)[1])


def _healthy(stack: Stack) -> bool:
    with contextlib.suppress(OSError):
        return stack.collector.health().get("broker_connected") is True
    return False


def _threads(stack: Stack) -> int:
    assert stack.collector.proc is not None
    status = Path(f"/proc/{stack.collector.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("Threads:")))


def _rss_kib(stack: Stack) -> int:
    assert stack.collector.proc is not None
    status = Path(f"/proc/{stack.collector.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmRSS:")))


_seq = iter(range(1, 10**9))


def _send(stack: Stack, device: str, pm: float) -> None:
    publish_up(stack.broker.port, device, [reading(next(_seq), int(time.time() * 1000), pm)])


# --- item 5: the collector cannot be frozen ----------------------------------------------


def test_backtracking_silence_freezes_nothing_and_survives_a_restart(stack: Stack) -> None:
    code, body = _post(f"{stack.api}/api/silences", TOKEN_ZHANG,
                       {**EVIL_SILENCE, "ends": int(time.time() * 1000) + 3_600_000})
    assert code == 201, body
    # an alert whose device label makes a backtracking engine try 2^38 paths
    _send(stack, EVIL_DEVICE, 300.0)
    assert wait_for(lambda: stack.alert_events("firing", EVIL_DEVICE), 10), \
        stack.collector.log.read_text()[-3000:]
    # the loop goes on: ingest, /healthz, MQTT keepalive
    before = count(stack.influx, stack.db)
    _send(stack, "dev-b", 20.0)
    assert wait_for(lambda: count(stack.influx, stack.db) == before + 1, 10)
    assert _healthy(stack)

    # the silence is saved; a restart reads it back and the collector still works
    stack.collector.stop()
    stack.collector.start()
    _send(stack, EVIL_DEVICE, 310.0)
    _send(stack, "dev-b", 21.0)
    assert wait_for(lambda: count(stack.influx, stack.db) == before + 3, 10)
    assert _healthy(stack)


def test_a_regex_re2_cannot_run_in_linear_time_is_refused_at_the_door(stack: Stack) -> None:
    for pattern in ("~(a)\\1", "~(?=a)a", "~(", "~" + "a" * 2000):
        code, body = _post(f"{stack.api}/api/silences", TOKEN_ZHANG,
                           {"matchers": {"device": pattern}, "reason": "x",
                            "ends": int(time.time() * 1000) + 60_000})
        assert code == 400 and "bad regex" in body["error"], (pattern, body)


def test_slowloris_and_idle_sockets_are_cut_off_with_few_threads(stack: Stack) -> None:
    port = _port(stack)
    threads_before = _threads(stack)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    try:
        time.sleep(0.5)
        # 200 idle sockets: at most MAX_CONNECTIONS handler threads, the rest told 503
        assert _threads(stack) <= threads_before + MAX_CONNECTIONS + 1
        assert _healthy(stack)
        # every idle socket is closed by the server by the deadline (a 503 or nothing)
        t0 = time.monotonic()
        for s in idle:
            s.settimeout(REQUEST_TIMEOUT_S + 3)
            answer = s.recv(4096)
            assert answer == b"" or _status(answer) == 503, answer[:100]
        assert time.monotonic() - t0 < REQUEST_TIMEOUT_S + 3
    finally:
        for s in idle:
            s.close()
    assert wait_for(lambda: _threads(stack) <= threads_before + 1, 5)

    # slowloris: a header byte every 0.3 s never stalls a single read, the deadline ends it
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /api/silences HTTP/1.1\r\nHost: x\r\n")
    s.settimeout(0.3)
    t0 = time.monotonic()
    answer = b""
    with contextlib.suppress(OSError):
        while time.monotonic() - t0 < 10 and not answer:
            s.sendall(b"X")
            with contextlib.suppress(TimeoutError):
                answer = s.recv(4096)
    s.close()
    assert _status(answer) == 408, answer
    assert REQUEST_TIMEOUT_S - 0.5 < time.monotonic() - t0 < REQUEST_TIMEOUT_S + 2
    # and the API answers again
    assert _post(f"{stack.api}/api/alerts/999999/ack", TOKEN_ZHANG, {})[0] == 404


@pytest.mark.parametrize(("headers", "expected"), [
    (b"Content-Length: 157286400\r\n", 413),  # 150 MB announced: refused unread
    (b"Content-Length: -1\r\n", 400),
    (b"Content-Length: abc\r\n", 400),
    (b"Content-Length: 1e3\r\n", 400),
    (b"Content-Length: 10\r\nContent-Length: 12\r\n", 400),
    (b"Transfer-Encoding: chunked\r\n", 411),
])
def test_bad_or_huge_content_length_is_answered_at_once(stack: Stack, headers: bytes,
                                                         expected: int) -> None:
    rss = _rss_kib(stack)
    request = (b"POST /api/silences HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
               + TOKEN_ZHANG.encode() + b"\r\n" + headers + b"\r\n" + b"{" * 65536)
    t0 = time.monotonic()
    answer = _raw(_port(stack), request)
    assert _status(answer) == expected, answer[:300]
    assert time.monotonic() - t0 < 1.5
    assert _rss_kib(stack) - rss < 20_000  # nothing of an announced 150 MB was read


def test_unknown_methods_and_garbage_are_4xx_not_dropped(stack: Stack) -> None:
    port = _port(stack)
    assert _status(_raw(port, b"DELETE /api/silences HTTP/1.1\r\nHost: x\r\n\r\n")) == 405
    assert _status(_raw(port, b"BREW /pot HTTP/1.1\r\n\r\n")) == 405
    assert _status(_raw(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")) == 400
    nested = b"[" * 50_000
    answer = _raw(port, b"POST /api/alerts/1/ack HTTP/1.1\r\nAuthorization: Bearer "
                  + TOKEN_ZHANG.encode() + b"\r\nContent-Length: "
                  + str(len(nested)).encode() + b"\r\n\r\n" + nested)
    assert _status(answer) == 400, answer[:300]


# generated requests: methods, paths, headers, bodies (JSON of any shape, or bytes)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12)
_line_text = st.text(st.characters(blacklist_characters="\r\n", codec="utf-8"), max_size=40)
_requests = st.fixed_dictionaries({
    "method": st.sampled_from(["POST", "GET", "PUT", "HEAD", "OPTIONS", "PATCH", "X"]) | st.text(
        st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8),
    "path": st.sampled_from(["/api/silences", "/api/alerts/1/ack", "/api/alerts/9/ack/",
                             "/"]) | _line_text.map(lambda t: "/" + t),
    "token": st.sampled_from([TOKEN_ZHANG, TOKEN_LI, "", "wrong"]) | _line_text,
    "headers": st.lists(st.tuples(st.text(st.characters(min_codepoint=33, max_codepoint=126,
                                                        blacklist_characters=":"),
                                          min_size=1, max_size=12), _line_text), max_size=4),
    "body": _json.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=300)
    | st.builds(lambda m, e: json.dumps({"matchers": m, "ends": e, "reason": "r"}).encode(),
                st.dictionaries(st.sampled_from(["device", "rule", "grid"]), _line_text,
                                max_size=3), st.integers()),
    "length": st.sampled_from(["exact", "none", "short"]) | _line_text,
})


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(req=_requests)
def test_generated_requests_are_always_answered_and_the_server_stays_healthy(
        stack: Stack, req: dict[str, Any]) -> None:
    body: bytes = req["body"]
    lines = [f"{req['method']} {req['path']} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    if req["token"] is not None:
        lines.append(f"Authorization: Bearer {req['token']}".encode())
    lines += [f"{k}: {v}".encode() for k, v in req["headers"]]
    length = req["length"]
    if length == "exact":
        lines.append(f"Content-Length: {len(body)}".encode())
    elif length == "short":  # announces more than it sends: the deadline answers for it
        lines.append(f"Content-Length: {len(body) + 5}".encode())
    elif length != "none":
        lines.append(f"Content-Length: {length}".encode())
    t0 = time.monotonic()
    answer = _raw(_port(stack), b"\r\n".join(lines) + b"\r\n\r\n" + body,
                  timeout=REQUEST_TIMEOUT_S + 5)
    assert time.monotonic() - t0 < REQUEST_TIMEOUT_S + 3
    status = _status(answer)  # a body shorter than announced: 408 at the deadline
    assert 200 <= status < 500 or status == 503, answer[:500]
    assert b"Traceback" not in answer
    assert _healthy(stack)


# --- item 6: per-person authority ------------------------------------------------------


def _fire(stack: Stack, device: str) -> int:
    _send(stack, device, 400.0)
    assert wait_for(lambda: stack.alert_events("firing", device), 10), \
        stack.collector.log.read_text()[-3000:]
    alert_id: int = stack.alert_events("firing", device)[-1]["data"]["alert_id"]
    return alert_id


def test_only_the_responsible_people_acknowledge_by_http(stack: Stack) -> None:
    alert_id = _fire(stack, "dev-a")  # 张三's device, 王镇长's township
    url = f"{stack.api}/api/alerts/{alert_id}/ack"
    code, body = _post(url, TOKEN_LI, {"by": "张三"})  # 李四 claims to be 张三
    assert code == 403 and "李四" in body["error"]
    assert "refused" in stack.collector.log.read_text()
    code, body = _post(url, TOKEN_ZHANG, {"by": "王五"})
    assert code == 200 and body["acked_by"] == "张三"  # the token's holder, not the claim
    assert wait_for(lambda: stack.alert_events("acknowledged", "dev-a"), 10)


def test_only_the_responsible_people_acknowledge_by_mqtt(stack: Stack) -> None:
    alert_id = _fire(stack, "dev-c")  # 李四's device in 河口镇, no officer configured there
    pub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", stack.broker.port)
    pub.loop_start()
    try:
        topic = f"airgrid/v1/cmd/alerts/{alert_id}/ack"
        # 王镇长 is 城关镇's officer, not 河口镇's; 张三 is another grid's worker
        for token in (TOKEN_OFFICER, TOKEN_ZHANG, "not-a-token-at-all"):
            pub.publish(topic, json.dumps({"token": token, "by": "李四"}), qos=1
                        ).wait_for_publish(5)
        time.sleep(1.0)
        assert not stack.alert_events("acknowledged", "dev-c")
        pub.publish(topic, json.dumps({"token": TOKEN_LI}), qos=1).wait_for_publish(5)
        assert wait_for(lambda: stack.alert_events("acknowledged", "dev-c"), 10)
    finally:
        pub.disconnect()
        pub.loop_stop()
    (acked,) = stack.alert_events("acknowledged", "dev-c")
    assert acked["data"]["acked_by"] == "李四" and acked["data"]["via"] == "mqtt"
    assert stack.collector.log.read_text().count(
        f"acknowledgement on airgrid/v1/cmd/alerts/{alert_id}/ack refused") == 2


def test_only_the_responsible_people_acknowledge_by_sms_in_any_number_form(
        stack: Stack) -> None:
    alert_id = _fire(stack, "dev-d")  # 张三's second device, in 城关镇
    stack.modem.deliver("13800000002", f"收到 {alert_id}")  # 李四, national form: refused
    # 王镇长, the chain above, as a modem may report it: 86 without the +
    stack.modem.deliver("8613900000009", f"收到 {alert_id}")
    assert wait_for(lambda: stack.alert_events("acknowledged", "dev-d"), 15), \
        stack.collector.log.read_text()[-3000:]
    (acked,) = stack.alert_events("acknowledged", "dev-d")
    assert acked["data"]["acked_by"] == f"王镇长 ({OFFICER})" and acked["data"]["via"] == "sms"
    assert f"by 李四 ({WORKER_B}) via sms refused" in stack.collector.log.read_text()
