"""Delivering a rendered report: to a folder, by e-mail (SMTP + STARTTLS) and as a
CloudEvent on the MQTT bus with a link to the file. Each route fails on its own
(`DeliveryFailed`) so one broken route does not hold back the others.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import mimetypes
import shutil
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from report.config import Bus, Email
from report.errors import DeliveryFailed

EVENT_TYPE = "org.airgrid.report.published"
SOURCE = "/airgrid/report"
#: MQTT topic under the bus prefix: {prefix}/v1/reports/{daily|monthly}
TOPIC = "{prefix}/v1/reports/{kind}"


def to_folder(files: list[Path], out_dir: Path, subdir: str) -> list[Path]:
    """Copy into out_dir/subdir (atomically: a reader never sees half a PDF)."""
    dest = out_dir / subdir
    try:
        dest.mkdir(parents=True, exist_ok=True)
        done = []
        for f in files:
            target = dest / f.name
            if f.resolve() != target.resolve():
                tmp = target.with_name(f".{target.name}.part")
                shutil.copyfile(f, tmp)
                tmp.replace(target)
            done.append(target)
        return done
    except OSError as exc:
        raise DeliveryFailed(f"cannot write the report to {dest}: {exc}") from exc


def by_email(cfg: Email, subject: str, body: str, files: list[Path]) -> None:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(cfg.to)
    msg["Message-ID"] = f"<{uuid.uuid4()}@airgrid-report>"
    msg.set_content(body)
    for f in files:
        ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        maintype, subtype = ctype.split("/", 1)
        msg.add_attachment(f.read_bytes(), maintype=maintype, subtype=subtype, filename=f.name)
    try:
        with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
            if cfg.starttls:
                ctx = ssl.create_default_context(
                    cafile=str(cfg.ca_file) if cfg.ca_file else None)
                smtp.starttls(context=ctx)  # verifies the certificate and the host name
            if cfg.username:
                _login(smtp, cfg.username, cfg.password or "")
            refused = smtp.send_message(msg)
    except (OSError, smtplib.SMTPException, ssl.SSLError, UnicodeError) as exc:
        raise DeliveryFailed(f"e-mail via {cfg.host}:{cfg.port} failed: {exc}") from exc
    if refused:
        raise DeliveryFailed(f"e-mail refused for {sorted(refused)}")


def _login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    """smtplib encodes credentials as ASCII; a Chinese password would crash it. AUTH PLAIN
    carries UTF-8 (RFC 4616 §2), so non-ASCII credentials go that way by hand."""
    if (user + password).isascii():
        smtp.login(user, password)
        return
    smtp.ehlo_or_helo_if_needed()
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    code, resp = smtp.docmd("AUTH", "PLAIN " + token)
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, resp)


def cloud_event(kind: str, period_label: str, date: str, links: list[str], summary: list[str],
                now: dt.datetime | None = None) -> dict[str, Any]:
    """CloudEvents 1.0, structured mode (JSON): the report's links and its summary."""
    at = now or dt.datetime.now(dt.UTC)
    return {
        "specversion": "1.0", "type": EVENT_TYPE, "source": SOURCE,
        "id": f"report-{kind}-{date}-{uuid.uuid4().hex[:8]}",
        "time": at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "subject": f"{kind}/{date}", "datacontenttype": "application/json",
        "data": {"kind": kind, "period": date, "title": period_label, "links": links,
                 "summary": summary},
    }


def on_bus(cfg: Bus, kind: str, event: dict[str, Any], timeout_s: float = 15.0) -> str:
    """Publish at QoS 1 and wait for the PUBACK; the topic it went to."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    topic = TOPIC.format(prefix=cfg.prefix, kind=kind)
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
                    protocol=mqtt.MQTTv5)
    if cfg.username:
        c.username_pw_set(cfg.username, cfg.password)
    if cfg.ca_file:
        c.tls_set(ca_certs=str(cfg.ca_file))
    acks: list[Any] = []
    # MQTT v5: a PUBACK with a reason code >= 0x80 (e.g. 135, not authorized by the ACL)
    # is a refusal, though paho still counts the message as published.
    c.on_publish = lambda client, userdata, mid, reason, props: acks.append(reason)
    try:
        c.connect(cfg.host, cfg.port, keepalive=30)
        c.loop_start()
        info = c.publish(topic, json.dumps(event, ensure_ascii=False).encode(), qos=1)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise DeliveryFailed(f"MQTT {cfg.host}:{cfg.port}: no PUBACK for {topic} "
                                 f"within {timeout_s:.0f} s")
        refused = [r for r in acks if getattr(r, "is_failure", False)]
        if refused:
            raise DeliveryFailed(f"MQTT {cfg.host}:{cfg.port}: {topic} refused: {refused[0]}")
    except (OSError, ValueError, RuntimeError) as exc:
        raise DeliveryFailed(f"MQTT {cfg.host}:{cfg.port}: {exc}") from exc
    finally:
        c.loop_stop()
        c.disconnect()
    return topic
