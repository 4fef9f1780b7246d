"""Scheduled delivery: the folder, e-mail over SMTP with STARTTLS (aiosmtpd with a
self-signed certificate, started here, requiring STARTTLS before AUTH), and a CloudEvent
with the report's link on a real Mosquitto."""

from __future__ import annotations

import datetime as dt
import email
import json
import subprocess
import threading
from email.message import Message
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from paho.mqtt.enums import CallbackAPIVersion

from orchestration.services import InfluxDB, Mosquitto, free_port
from report import cli, delivery
from report.config import Email
from report.errors import DeliveryFailed
from tests.support.wait import wait_for

DAY = dt.date(2026, 11, 25)
PASSWORD = "s3cret-报告"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.logins: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def auth(self, server: Any, session: Any, envelope: Any, mechanism: str,
             data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password == PASSWORD.encode()
        if ok:
            self.logins.append(data.login)
        return AuthResult(success=ok)


@pytest.fixture
def smtp(tmp_path: Path) -> Any:
    cert, key = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    inbox = Inbox()
    port = free_port()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=ctx,
                     require_starttls=True, authenticator=inbox.auth, auth_required=True,
                     auth_require_tls=True)
    ctl.start()
    yield port, cert, inbox
    ctl.stop()


def _report_config(tmp: Path, influx: InfluxDB, smtp_port: int, cert: Path,
                   broker_port: int) -> Path:
    (tmp / "collector.toml").write_text(
        f'[influx]\nurl = "{influx.url}"\ndatabase = "report_empty"\n'
        '[alerting]\nenabled = false\n', encoding="utf-8")
    cfg = tmp / "report.toml"
    cfg.write_text(f'''collector_config = "collector.toml"
county = "新县"
formats = ["pdf"]
out_dir = "reports"
link_base = "https://reports.county.example/airgrid/"
[email]
host = "127.0.0.1"
port = {smtp_port}
username = "report"
password_env = "AIRGRID_TEST_SMTP_PASSWORD"
sender = "airgrid@county.example"
to = ["huanbao@county.example", "xianzhang@county.example"]
ca_file = "{cert.name}"
[bus]
host = "127.0.0.1"
port = {broker_port}
''', encoding="utf-8")
    return cfg


def test_deliver_to_folder_by_starttls_mail_and_as_a_cloudevent(
        tmp_path: Path, smtp: Any, mosquitto: Mosquitto, shared_influxdb: InfluxDB,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    port, cert, inbox = smtp
    monkeypatch.setenv("AIRGRID_TEST_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "cache"))
    cfg = _report_config(tmp_path, shared_influxdb, port, cert, mosquitto.port)
    events: list[dict[str, Any]] = []
    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscribed = threading.Event()
    sub.on_message = lambda c, u, m: events.append({"topic": m.topic, **json.loads(m.payload)})
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("airgrid/v1/reports/#", qos=1)
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        assert cli.main(["deliver", "--config", str(cfg), "--date", DAY.isoformat()]) == 0
        assert wait_for(lambda: events, 10)
    finally:
        sub.loop_stop()
        sub.disconnect()
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["failed"] == [] and done["has_data"] is False
    # the folder
    pdf = tmp_path / "reports" / "2026" / "daily" / "airgrid-report-2026-11-25.pdf"
    assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF")
    # a day without data: the report says so instead of failing
    text = " ".join(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True,
                                   text=True, check=True).stdout.split())
    assert "本期无监测数据" in text and "新县空气质量日报" in text
    # the mail: over STARTTLS (AUTH is refused before it), with the PDF attached
    assert inbox.logins == [b"report"]
    (msg,) = inbox.messages
    assert "新县空气质量日报" in str(email.header.make_header(
        email.header.decode_header(msg["Subject"])))
    assert msg["To"] == "huanbao@county.example, xianzhang@county.example"
    parts = [p for p in msg.walk() if p.get_filename()]
    assert [p.get_filename() for p in parts] == [pdf.name]
    assert parts[0].get_payload(decode=True) == pdf.read_bytes()
    body = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    assert "本期无监测数据" in body.get_payload(decode=True).decode("utf-8")
    # the CloudEvent: its link is where the folder is served
    (ev,) = events
    assert ev["topic"] == "airgrid/v1/reports/daily"
    assert ev["specversion"] == "1.0" and ev["type"] == delivery.EVENT_TYPE
    assert ev["data"]["links"] == [
        "https://reports.county.example/airgrid/2026/daily/airgrid-report-2026-11-25.pdf"]
    assert ev["data"]["summary"][0].startswith("本期无监测数据")


def test_mail_to_a_server_whose_certificate_is_not_trusted_fails_by_name(
        tmp_path: Path, smtp: Any) -> None:
    port, _cert, inbox = smtp
    f = tmp_path / "r.pdf"
    f.write_bytes(b"%PDF-1.4\n")
    cfg = Email(host="127.0.0.1", port=port, sender="a@b.example", to=("c@d.example",),
                username="report", password=PASSWORD, timeout_s=5)  # system CAs only
    with pytest.raises(DeliveryFailed, match=rf"127.0.0.1:{port}.*CERTIFICATE_VERIFY_FAILED"):
        delivery.by_email(cfg, "t", "b", [f])
    assert inbox.messages == []


def test_a_broken_route_does_not_stop_the_others(
        tmp_path: Path, shared_influxdb: InfluxDB, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """No SMTP server and no broker: the folder copy is still made; exit status 1; the
    failures are named on stderr, no traceback."""
    monkeypatch.setenv("AIRGRID_TEST_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "cache"))
    cert = tmp_path / "none.crt"
    cfg = _report_config(tmp_path, shared_influxdb, free_port(), cert, free_port())
    assert cli.main(["deliver", "--config", str(cfg), "--date", DAY.isoformat()]) == 1
    out, err = capsys.readouterr()
    done = json.loads(out.strip().splitlines()[-1])
    assert done["failed"] == ["email", "bus"]
    assert (tmp_path / "reports" / "2026" / "daily" / "airgrid-report-2026-11-25.pdf").is_file()
    assert "Traceback" not in err
    logged = err + caplog.text  # stderr in a shell; pytest takes the log records
    assert "e-mail via 127.0.0.1" in logged and "MQTT 127.0.0.1" in logged


def test_a_publish_the_broker_acl_refuses_fails_the_route(secured_broker: Any) -> None:
    """The generated ACL gives the `app` role no write on airgrid/v1/reports/#: with MQTT v5
    the PUBACK says 135 (not authorized), and the route fails by name instead of reporting
    a delivery that never happened."""
    from report.config import Bus

    bus = Bus(host="127.0.0.1", port=secured_broker.port, username="app",
              password=secured_broker.passwords["app"], client_id="report-test")
    event = delivery.cloud_event("daily", "t", "2026-11-25", ["https://x.example/r.pdf"], [])
    with pytest.raises(DeliveryFailed, match=r"airgrid/v1/reports/daily refused: Not author"):
        delivery.on_bus(bus, "daily", event, timeout_s=5)
