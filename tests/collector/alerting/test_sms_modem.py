"""SMS through the simulated GSM modem on a pseudo-terminal: the recorded SMS decode back
to the exact Chinese text, single and multipart; +CMS ERROR is retried; replies ack."""

from __future__ import annotations

import time
from pathlib import Path

from collector.alerting.channels.notifier import Context
from collector.alerting.channels.rate_limit import RateLimiter
from collector.alerting.channels.sms_modem import ModemNotifier
from collector.alerting.channels.sms_pdu import encode_submit, split_ucs2
from collector.alerting.errors import DeliveryRetry
from collector.alerting.model import Message
from collector.alerting.service import AlertingService
from firmware_sim.gsm_modem import parse_submit
from tests.support.alerting import OFFICER, T0, WORKER, WORKER_B, modem_sim, sms_config, tr
from tests.support.integration import Processes
from tests.support.wait import wait_for

LONG = ("【空气质量告警】城关镇·g1·城关镇政府楼顶：PM2.5 186.0 µg/m³，重度污染。儿童、老年人和"
        "心脏病、肺病患者应停留在室内，停止户外运动，一般人群减少户外运动。请回复“收到 12”确认。")


def _msg(text: str, to: str = WORKER, mid: str = "m1") -> Message:
    return Message(id=mid, channel="modem", recipient=to, kind="notification", text=text,
                   event={})


def test_pdu_parts_split_at_67_ucs2_units_and_never_inside_a_surrogate_pair() -> None:
    assert len(split_ucs2("浓" * 70)) == 1
    assert [len(p) // 2 for p in split_ucs2("浓" * 71)] == [67, 4]
    text = "a" * 66 + "😷" + "b" * 5  # the emoji's two UTF-16 units straddle unit 67
    parts = split_ucs2(text)
    assert [len(p) // 2 for p in parts] == [66, 7]
    pdus = encode_submit(WORKER, text, 9)
    assert "".join(parse_submit(p.hex)[1] for p in pdus) == text
    assert all(parse_submit(p.hex)[3] == p.tpdu_octets for p in pdus)


def test_single_part_in_text_mode_and_multipart_in_pdu_mode_arrive_exactly(
        tmp_path: Path) -> None:
    with modem_sim(tmp_path) as modem:
        n = ModemNotifier("modem", modem.port.path, timeout_s=5)
        n.start()
        try:
            short = "城关镇PM2.5超标，请回复“收到 7”确认。"
            n.send(_msg(short, mid="s"))
            n.send(_msg(LONG, to=WORKER_B, mid="l"))
        finally:
            n.close()
    assert len(LONG) > 70
    sent = [(s.to, s.text, s.parts, s.mode) for s in modem.sent]
    assert sent == [(WORKER, short, 1, "text"), (WORKER_B, LONG, 2, "pdu")]
    assert 'AT+CSCS="UCS2"' in modem.commands and "AT+CSMP=17,167,0,8" in modem.commands
    # the record file holds the same, readable back as UTF-8 JSON
    assert LONG in (tmp_path / "sms.jsonl").read_text(encoding="utf-8")


def test_cms_error_is_retried_by_the_delivery_stage_and_sent_once(tmp_path: Path) -> None:
    with modem_sim(tmp_path) as modem:
        svc = AlertingService(sms_config(tmp_path, modem.port.path), Context(file="t"))
        modem.fail_next(2)  # +CMS ERROR: 38, network out of order
        svc.start()
        try:
            svc.handle([tr("dev-a", "firing", 186.0, T0)], T0)
            assert wait_for(lambda: len(modem.sent) == 1, 10)
            time.sleep(0.5)
        finally:
            svc.stop()
    assert len(modem.sent) == 1
    assert modem.sent[0].to == WORKER and "城关镇政府楼顶" in modem.sent[0].text
    assert "请回复“收到 1”确认" in modem.sent[0].text
    assert svc.stats.retries["modem"] == 2 and svc.stats.sent["modem"] == 1


def test_rate_limit_per_recipient_delays_without_counting_a_failure(tmp_path: Path) -> None:
    with modem_sim(tmp_path) as modem:
        n = ModemNotifier("modem", modem.port.path, timeout_s=5, limiter=RateLimiter(2, 3600))
        n.start()
        try:
            n.send(_msg("一", mid="1"))
            n.send(_msg("二", mid="2"))
            try:
                n.send(_msg("三", mid="3"))
                raise AssertionError("third message within the window was sent")
            except DeliveryRetry as exc:
                assert not exc.counts and exc.after_s is not None and exc.after_s > 3500
            n.send(_msg("给别人", to=WORKER_B, mid="4"))  # another recipient is not held up
        finally:
            n.close()
    assert [s.text for s in modem.sent] == ["一", "二", "给别人"]


def test_sms_reply_acknowledges_and_stops_escalation(tmp_path: Path) -> None:
    with modem_sim(tmp_path) as modem:
        svc = AlertingService(sms_config(tmp_path, modem.port.path), Context(file="t"))
        svc.start()
        try:
            svc.handle([tr("dev-a", "firing", 186.0, T0)], T0)
            assert wait_for(lambda: len(modem.sent) == 1)
            alert_id = svc.manager.lifecycle.by_key["pm25_heavy|dev-a"].id
            modem.deliver("+8613000000000", f"收到 {alert_id}")  # unknown number: ignored
            modem.deliver(WORKER, f"收到 {alert_id}")
            assert wait_for(lambda: svc.manager.get(alert_id).acknowledged)  # type: ignore[union-attr]
            alert = svc.manager.get(alert_id)
            assert alert is not None and alert.acked_by == f"张三 ({WORKER})"
            assert svc.manager.counters["sms_unknown_sender"] == 1
            assert not modem.storage  # read messages are deleted from the SIM
            svc.handle([], T0 + 11 * 60_000)  # past the first escalation step
            time.sleep(0.5)
        finally:
            svc.stop()
    assert [s.to for s in modem.sent] == [WORKER]
    assert OFFICER not in {s.to for s in modem.sent}


def test_english_ack_reply_is_understood(tmp_path: Path) -> None:
    with modem_sim(tmp_path) as modem:
        svc = AlertingService(sms_config(tmp_path, modem.port.path, language="en"),
                              Context(file="t"))
        svc.start()
        try:
            svc.handle([tr("dev-c", "firing", 200.0, T0)], T0)
            assert wait_for(lambda: len(modem.sent) == 1)
            modem.deliver(WORKER_B, "ACK 1")
            assert wait_for(lambda: svc.manager.get(1) is not None
                            and svc.manager.get(1).acknowledged)  # type: ignore[union-attr]
        finally:
            svc.stop()
    assert modem.sent[0].text.startswith("[Air quality alert]") and "ACK 1" in modem.sent[0].text


def test_airgrid_sim_gsm_subcommand_records_and_delivers(tmp_path: Path,
                                                         processes: Processes) -> None:
    import json
    import subprocess
    import sys

    link, record = tmp_path / "ttyGSM0", tmp_path / "sent.jsonl"
    proc = processes.popen(
        [sys.executable, "-m", "firmware_sim.cli", "gsm", "--link", str(link), "--record",
         str(record), "--seconds", "20"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    got: list[tuple[str, str, str]] = []
    try:
        assert proc.stdout is not None and "gsm modem on" in proc.stdout.readline()
        n = ModemNotifier("modem", str(link), timeout_s=5,
                          on_sms=lambda ch, sender, text: got.append((ch, sender, text)))
        n.start()
        n.send(_msg(LONG, to=OFFICER))
        assert proc.stdin is not None
        proc.stdin.write(f"{OFFICER} 收到 12\n")
        proc.stdin.flush()
        assert wait_for(lambda: bool(got), 5)
        n.close()
    finally:
        proc.terminate()
        proc.wait(10)
    assert got == [("modem", OFFICER, "收到 12")]
    rows = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    assert [(r["to"], r["text"], r["parts"]) for r in rows] == [(OFFICER, LONG, 2)]
