"""Webhooks and the SMS gateway against HTTP receivers on loopback that verify the
signature: retries with backoff, dead letter and metric, a slow channel delays no other."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.alerting.channels.notifier import Context
from collector.alerting.channels.webhook_verify import SignatureError, sign, verify
from collector.alerting.service import AlertingService
from tests.support.alerting import T0, WORKER, Receiver, config, tr
from tests.support.wait import wait_for

SECRET = "0123456789abcdef-county-secret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(secret=SECRET.encode())
    r.start()
    yield r
    r.stop()


def hook_service(tmp_path: Path, url: str, **channel: object) -> AlertingService:
    cfg = config(tmp_path, event_channels=["hook"], channels={"hook": {
        "type": "webhook", "url": url, "secret": SECRET, "backoff": "100ms", **channel}})
    svc = AlertingService(cfg, Context(file="t"))
    svc.start()
    return svc


def test_signed_cloudevent_is_delivered_and_verifies(tmp_path: Path, receiver: Receiver) -> None:
    svc = hook_service(tmp_path, receiver.url)
    try:
        svc.handle([tr("dev-a", "firing", 186.0, T0)], T0)
        assert wait_for(lambda: len(receiver.accepted()) == 1)
    finally:
        svc.stop()
    assert receiver.bad_signatures == 0
    ev = receiver.accepted()[0]
    assert ev["type"] == "org.airgrid.alert.firing" and ev["subject"] == "dev-a"
    assert ev["data"]["labels"]["grid"] == "g1"
    headers = receiver.requests[0]["headers"]
    assert headers["X-Airgrid-Delivery"] == f"ev:{ev['id']}:hook"
    assert headers["Content-Type"].startswith("application/cloudevents+json")


def test_verifier_rejects_altered_body_wrong_secret_and_replays() -> None:
    body = b'{"a": 1}'
    now = 1_800_000_000
    header = sign(SECRET.encode(), now, body)
    assert verify(SECRET.encode(), header, body, now_s=now + 10) == now
    for secret, data, at in ((SECRET.encode(), b'{"a": 2}', now), (b"other", body, now),
                             (SECRET.encode(), body, now + 3600)):
        with pytest.raises(SignatureError):
            verify(secret, header, data, now_s=at)
    with pytest.raises(SignatureError):
        verify(SECRET.encode(), "garbage", body, now_s=now)


def test_server_errors_are_retried_with_growing_backoff(tmp_path: Path,
                                                       receiver: Receiver) -> None:
    receiver.statuses = [500, 503, 500]
    svc = hook_service(tmp_path, receiver.url)
    try:
        svc.handle([tr("dev-a", "firing", 186.0, T0)], T0)
        assert wait_for(lambda: len(receiver.accepted()) == 1)
    finally:
        svc.stop()
    at = [r["at"] for r in receiver.requests]
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert len(at) == 4
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.39  # 100, 200, 400 ms
    ids = {r["headers"]["X-Airgrid-Delivery"] for r in receiver.requests}
    assert len(ids) == 1  # the same message each time: receivers can dedup
    assert svc.stats.retries["hook"] == 3 and svc.stats.dead["hook"] == 0


def test_after_n_failures_a_dead_letter_and_a_metric(tmp_path: Path, receiver: Receiver) -> None:
    receiver.statuses = [503] * 10
    svc = hook_service(tmp_path, receiver.url, max_attempts=3)
    try:
        svc.handle([tr("dev-a", "firing", 186.0, T0)], T0)
        assert wait_for(lambda: svc.stats.dead["hook"] == 1)
        time.sleep(0.5)
        rows = svc.store.outbox_rows("hook")
        value = svc.stats.registry.get_sample_value("airgrid_alert_dead_letters_total",
                                                    {"channel": "hook"})
    finally:
        svc.stop()
    assert len(receiver.requests) == 3
    assert rows[0]["status"] == "dead" and rows[0]["attempts"] == 3
    assert "HTTP 503" in str(rows[0]["last_error"])
    assert value == 1.0


def test_client_error_is_dead_at_once(tmp_path: Path, receiver: Receiver) -> None:
    receiver.statuses = [410]
    svc = hook_service(tmp_path, receiver.url)
    try:
        svc.handle([tr("dev-a", "firing", 186.0, T0)], T0)
        assert wait_for(lambda: svc.stats.dead["hook"] == 1)
    finally:
        svc.stop()
    assert len(receiver.requests) == 1


def test_a_slow_channel_never_delays_the_others(tmp_path: Path) -> None:
    slow, fast = Receiver(secret=SECRET.encode(), delay_s=1.0), Receiver(secret=SECRET.encode())
    slow.start()
    fast.start()
    cfg = config(tmp_path, event_channels=["slow", "fast"], channels={
        "slow": {"type": "webhook", "url": slow.url, "secret": SECRET, "timeout_s": 10.0},
        "fast": {"type": "webhook", "url": fast.url, "secret": SECRET}})
    svc = AlertingService(cfg, Context(file="t"))
    svc.start()
    try:
        t = time.monotonic()
        svc.handle([tr(d, "firing", 186.0, T0) for d in ("dev-a", "dev-b", "dev-c")], T0)
        assert wait_for(lambda: len(fast.accepted()) == 3, 5)
        fast_s = time.monotonic() - t
        assert len(slow.accepted()) == 0  # still on its first request
    finally:
        svc.stop()
        slow.stop()
        fast.stop()
    assert fast_s < 0.8


def test_sms_gateway_posts_the_template_with_auth(tmp_path: Path) -> None:
    gw = Receiver(statuses=[502])
    gw.start()
    cfg = config(
        tmp_path, event_channels=[],
        channels={"gw": {"type": "sms_gateway", "url": gw.url, "token": "gw-token",
                         "backoff": "100ms", "success_contains": "{}",
                         "body_template": '{"mobile": {to}, "content": {text}, "ref": {id}}'}},
        receivers={"grid_worker": {"targets": [{"channel": "gw", "to": "grid_worker"}]}},
        route={"receiver": "grid_worker", "group_wait": "0s"})
    svc = AlertingService(cfg, Context(file="t"))
    svc.start()
    try:
        svc.handle([tr("dev-a", "firing", 186.0, T0)], T0)
        assert wait_for(lambda: len(gw.accepted()) == 1)
    finally:
        svc.stop()
        gw.stop()
    assert len(gw.requests) == 2  # the 502 was retried
    body = gw.accepted()[0]
    assert body["mobile"] == WORKER and body["ref"].startswith("n:")
    assert body["content"].startswith(
        "【空气质量告警】城关镇g1·城关镇政府楼顶：PM2.5 186.0 µg/m³，重度污染。")
    assert gw.requests[1]["headers"]["Authorization"] == "Bearer gw-token"
    assert json.loads(gw.requests[1]["body"]) == body


def test_a_non_ascii_signature_is_a_signature_error_in_a_real_receiver(
        processes: None) -> None:
    """`verify()` raised TypeError on a non-ASCII `v1` (hmac.compare_digest refuses
    non-ASCII str): a receiver copying it dropped the connection instead of answering 401."""
    import http.client

    rx = Receiver(secret=b"a-long-shared-secret")
    rx.start()
    try:
        assert rx.server is not None
        for v1 in ("é" * 64, "\u00ff", "0" * 63 + "\u00e9"):
            conn = http.client.HTTPConnection("127.0.0.1", rx.server.port,
                                              timeout=5)
            conn.putrequest("POST", "/hook")
            # header values travel as latin-1: these are the bytes an attacker sends
            conn.putheader("X-Airgrid-Signature", f"t={int(time.time())},v1={v1}")
            conn.putheader("Content-Length", "2")
            conn.endheaders(b"{}")
            assert conn.getresponse().status == 401
            conn.close()
        assert rx.bad_signatures == 3
    finally:
        rx.stop()


@given(header=st.text(max_size=120) | st.text(max_size=80).map(
    lambda v1: f"t=1764050000,v1={v1}"), body=st.binary(max_size=64))
def test_verify_raises_only_signature_error_on_any_header(header: str, body: bytes) -> None:
    with contextlib.suppress(SignatureError):  # anything else (TypeError) fails the test
        verify(b"secret", header, body, now_s=1_764_050_000)
