"""The Alibaba Cloud SMS channel against a local server that implements SendSms as the
provider documents it: form parameters, HMAC-SHA1 signature (computed here on its own,
from the documentation, not with the channel's code), JSON answers with its error codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.alerting.channels.notifier import Context
from collector.alerting.channels.sms_aliyun import AliyunSmsNotifier, phone_number
from collector.alerting.errors import DeliveryRejected, DeliveryRetry
from collector.alerting.model import Message
from collector.alerting.service import AlertingService
from tests.support.alerting import T0, WORKER, config, tr
from tests.support.http_fake import LoopbackServer, Request, Response
from tests.support.wait import wait_for

KEY_ID, KEY_SECRET = "LTAI5tTestKeyId", "test-secret/with+chars="
REQUIRED = ("AccessKeyId", "Action", "Format", "RegionId", "SignatureMethod",
            "SignatureNonce", "SignatureVersion", "Timestamp", "Version", "PhoneNumbers",
            "SignName", "TemplateCode", "Signature")


def _rfc3986(s: str) -> str:
    # The documentation's recipe: encode, then + → %20, * → %2A, %7E → ~.
    return (urllib.parse.quote_plus(s, safe="").replace("+", "%20").replace("*", "%2A")
            .replace("%7E", "~"))


def _expected_signature(method: str, params: dict[str, str], secret: str) -> str:
    query = "&".join(f"{_rfc3986(k)}={_rfc3986(v)}" for k, v in sorted(params.items())
                     if k != "Signature")
    to_sign = f"{method}&{_rfc3986('/')}&{_rfc3986(query)}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(),
                                     hashlib.sha1).digest()).decode()


@dataclass
class FakeDysmsapi:
    """SendSms on loopback: verifies every request, answers codes from a script."""

    codes: list[tuple[int, str]] = field(default_factory=list)  # then (200, "OK")
    received: list[dict[str, str]] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.server = LoopbackServer(self._respond)
        self.url = self.server.url + "/"

    def _respond(self, request: Request) -> Response:
        form = urllib.parse.parse_qs(request.body.decode(), keep_blank_values=True,
                                     strict_parsing=True)
        status, code = self.answer({k: v[0] for k, v in form.items()},
                                   request.header("Content-Type"))
        return Response.json(status, {
            "Code": code, "Message": code.lower(),
            "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990",
            **({"BizId": "900619746936498440^0"} if code == "OK" else {})})

    def answer(self, p: dict[str, str], content_type: str) -> tuple[int, str]:
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return 400, "InvalidParameter"
        if any(k not in p for k in REQUIRED):
            return 400, "MissingParameter"
        if p["AccessKeyId"] != KEY_ID:
            return 404, "InvalidAccessKeyId.NotFound"
        if p["Signature"] != _expected_signature("POST", p, KEY_SECRET):
            return 400, "SignatureDoesNotMatch"
        if p["SignatureNonce"] in self.nonces:
            return 400, "SignatureNonceUsed"
        self.nonces.add(p["SignatureNonce"])
        if (p["Action"], p["Version"], p["SignatureMethod"], p["SignatureVersion"]) != (
                "SendSms", "2017-05-25", "HMAC-SHA1", "1.0"):
            return 400, "InvalidParameter"
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", p["Timestamp"]):
            return 400, "InvalidTimeStamp.Format"
        if not re.fullmatch(r"1\d{10}", p["PhoneNumbers"]):
            return 200, "isv.MOBILE_NUMBER_ILLEGAL"
        json.loads(p["TemplateParam"])
        self.received.append(p)
        return self.codes.pop(0) if self.codes else (200, "OK")

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def dysmsapi() -> Iterator[FakeDysmsapi]:
    fake = FakeDysmsapi()
    yield fake
    fake.stop()


def _notifier(url: str, secret: str = KEY_SECRET) -> AliyunSmsNotifier:
    return AliyunSmsNotifier("aliyun", access_key_id=KEY_ID, access_key_secret=secret,
                             sign_name="西河县生态环境", template_code="SMS_462735012",
                             template_params={"area": "township", "pm": "value"},
                             endpoint=url)


def _message(text: str = "城关镇 PM2.5 186", to: str = WORKER, n: int = 0) -> Message:
    event = {"data": {"group": "城关镇", "level": 1, "text": text, "firing": [
        {"device": "dev-a", "rule": "pm25_heavy", "value": 186.0, "severity": "warning",
         "labels": {"township": "城关镇", "grid": "g1"},
         "annotations": {"summary_zh": "城关镇政府楼顶：PM2.5 186 µg/m³"}}], "resolved": []}}
    return Message(id=f"n:{n}", channel="aliyun", recipient=to, kind="notification",
                   text=text, event=event)


def test_a_signed_sendsms_with_template_sign_and_json_params(dysmsapi: FakeDysmsapi) -> None:
    _notifier(dysmsapi.url).send(_message())
    (p,) = dysmsapi.received
    assert p["PhoneNumbers"] == "13800000001"  # +86 dropped for a mainland number
    assert (p["SignName"], p["TemplateCode"]) == ("西河县生态环境", "SMS_462735012")
    assert json.loads(p["TemplateParam"]) == {"area": "城关镇", "pm": "186.0"}
    assert p["OutId"] == "n:0"


def test_a_wrong_secret_is_refused_by_the_server_and_given_up(
        dysmsapi: FakeDysmsapi) -> None:
    with pytest.raises(DeliveryRejected, match="SignatureDoesNotMatch"):
        _notifier(dysmsapi.url, secret="wrong").send(_message())
    assert dysmsapi.received == []


@pytest.mark.parametrize(("status", "code", "outcome", "after_s"), [
    (200, "isv.BUSINESS_LIMIT_CONTROL", DeliveryRetry, 60.0),
    (200, "isp.SYSTEM_ERROR", DeliveryRetry, None),
    (200, "isv.AMOUNT_NOT_ENOUGH", DeliveryRetry, None),
    (503, "ServiceUnavailable", DeliveryRetry, None),
    (200, "isv.SMS_TEMPLATE_ILLEGAL", DeliveryRejected, None),
    (200, "isv.TEMPLATE_MISSING_PARAMETERS", DeliveryRejected, None),
    (200, "isv.SMS_SIGNATURE_ILLEGAL", DeliveryRejected, None),
    (200, "isv.SOMETHING_NEW", DeliveryRetry, None),  # unknown: retried, never dropped
])
def test_error_codes_map_to_retry_or_give_up(dysmsapi: FakeDysmsapi, status: int, code: str,
                                             outcome: type[Exception],
                                             after_s: float | None) -> None:
    dysmsapi.codes = [(status, code)]
    with pytest.raises(outcome, match=re.escape(code)) as err:
        _notifier(dysmsapi.url).send(_message())
    if isinstance(err.value, DeliveryRetry):
        assert err.value.after_s == after_s


def test_a_number_the_provider_refuses_is_given_up(dysmsapi: FakeDysmsapi) -> None:
    with pytest.raises(DeliveryRejected, match=r"isv\.MOBILE_NUMBER_ILLEGAL"):
        _notifier(dysmsapi.url).send(_message(to="+85212345678"))


@pytest.fixture(scope="module")
def shared_dysmsapi() -> Iterator[FakeDysmsapi]:
    fake = FakeDysmsapi()
    yield fake
    fake.stop()


@settings(max_examples=40, deadline=None)
@given(text=st.text(min_size=1, max_size=60))
def test_any_text_is_signed_as_the_server_computes_it(shared_dysmsapi: FakeDysmsapi,
                                                      text: str) -> None:
    n = AliyunSmsNotifier("aliyun", access_key_id=KEY_ID, access_key_secret=KEY_SECRET,
                          sign_name="西河县 生态*环境~", template_code="SMS_1",
                          template_params={"t": "text"}, endpoint=shared_dysmsapi.url)
    n.limiter.record = lambda *a: None  # type: ignore[method-assign]  # many sends, one number
    n.send(_message(text=text))
    assert json.loads(shared_dysmsapi.received[-1]["TemplateParam"]) == {"t": text}


def test_phone_numbers() -> None:
    assert phone_number("+86 138 0000 0001") == "13800000001"
    assert phone_number("+85212345678") == "85212345678"


def test_the_channel_from_config_delivers_through_the_alerting_service(
        tmp_path: Path, dysmsapi: FakeDysmsapi) -> None:
    dysmsapi.codes = [(200, "isp.SYSTEM_ERROR")]  # retried, then OK
    cfg = config(
        tmp_path, event_channels=[],
        channels={"sms": {"type": "sms_aliyun", "endpoint": dysmsapi.url, "api_key": KEY_ID,
                          "api_secret": KEY_SECRET, "sign_name": "西河县生态环境",
                          "template_code": "SMS_462735012", "backoff": "100ms",
                          "template_params": {"area": "township", "pm": "value"}}},
        receivers={"grid_worker": {"targets": [{"channel": "sms", "to": "grid_worker"}]}},
        route={"receiver": "grid_worker", "group_wait": "0s"})
    svc = AlertingService(cfg, Context(file="t"))
    svc.start()
    try:
        svc.handle([tr("dev-a", "firing", 186.0, T0)], T0)
        assert wait_for(lambda: len(dysmsapi.received) == 2, 10)
    finally:
        svc.stop()
    assert json.loads(dysmsapi.received[1]["TemplateParam"]) == {"area": "城关镇", "pm": "186.0"}
    assert dysmsapi.received[1]["PhoneNumbers"] == WORKER.removeprefix("+86")


def test_config_rejects_an_unknown_template_field(tmp_path: Path) -> None:
    from airgrid.config import ConfigError

    with pytest.raises(ConfigError, match=r"template_params\.area: expected one of"):
        config(tmp_path, channels={"sms": {
            "type": "sms_aliyun", "api_key": "k", "api_secret": "s", "sign_name": "x",
            "template_code": "SMS_1", "template_params": {"area": "townshp"}}})
