"""The Tencent Cloud SMS channel against a local server that implements SendSms (2021-01-11)
as the provider documents it: a JSON POST with X-TC-* headers, a TC3-HMAC-SHA256
signature (recomputed here on its own from the documentation's four steps, not with the
channel's code), answers under `Response` with the provider's error codes."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from airgrid.config import ConfigError
from collector import config as collector_config
from collector.alerting.channels import sms_tencent
from collector.alerting.channels.notifier import Context
from collector.alerting.channels.rate_limit import RateLimiter
from collector.alerting.channels.sms_tencent import TencentSmsNotifier, phone_number
from collector.alerting.errors import DeliveryRejected, DeliveryRetry
from collector.alerting.model import Message
from collector.alerting.service import AlertingService
from tests.support.alerting import T0, WORKER, config, tr
from tests.support.http_fake import LoopbackServer, Request, Response
from tests.support.wait import wait_for

SECRET_ID, SECRET_KEY = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3TEST", "Gu5t9xGARNpq86cd98joQYCN3TEST"
APP_ID = "1400006666"
AUTHORIZATION = re.compile(r"TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d\d-\d\d)"
                           r"/(?P<service>[a-z]+)/tc3_request, SignedHeaders=(?P<signed>[a-z;-]+)"
                           r", Signature=(?P<sig>[0-9a-f]{64})")


def _hex_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _expected_signature(secret_key: str, headers: dict[str, str], signed: str, body: bytes,
                        timestamp: str, date: str, service: str) -> str:
    """The documentation's steps, on what the server received."""
    # 1. CanonicalRequest: method, URI "/", empty query, the signed headers as
    #    lowercase "key:value\n" sorted by key, the signed header names, hex SHA-256 of body.
    names = signed.split(";")
    canonical_headers = "".join(f"{n}:{headers[n].strip().lower()}\n" for n in sorted(names))
    canonical = "\n".join(["POST", "/", "", canonical_headers, signed, _hex_sha256(body)])
    # 2. StringToSign.
    to_sign = "\n".join(["TC3-HMAC-SHA256", timestamp, f"{date}/{service}/tc3_request",
                         _hex_sha256(canonical.encode("utf-8"))])

    # 3. Derived keys from "TC3" + SecretKey over date, service, "tc3_request".
    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    signing = mac(mac(mac(("TC3" + secret_key).encode("utf-8"), date), service), "tc3_request")
    return hmac.new(signing, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass
class FakeSmsApi:
    """sms.tencentcloudapi.com on loopback: verifies every request, answers from a script.

    `script` holds ("error", code) for a failed request or ("status", code) for a number's
    SendStatusSet entry; once empty, every number is sent ("Ok")."""

    script: list[tuple[str, str]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server = LoopbackServer(self._respond)
        self.url = self.server.url + "/"

    def _respond(self, request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        answer = self.answer(request.path, headers, request.body)
        # API 3.0 answers errors with 200 too
        return Response.json(200, {"Response": {**answer, "RequestId": str(uuid.uuid4())}},
                             ensure_ascii=False)

    @staticmethod
    def _error(code: str) -> dict[str, Any]:
        return {"Error": {"Code": code, "Message": code.lower()}}

    def answer(self, path: str, h: dict[str, str], body: bytes) -> dict[str, Any]:
        if path != "/" or h.get("content-type") != "application/json; charset=utf-8":
            return self._error("InvalidParameter")
        if (h.get("x-tc-action"), h.get("x-tc-version")) != ("SendSms", "2021-01-11"):
            return self._error("InvalidAction")
        if not h.get("x-tc-region"):
            return self._error("MissingParameter")
        timestamp = h.get("x-tc-timestamp", "")
        m = AUTHORIZATION.fullmatch(h.get("authorization", ""))
        if m is None or not timestamp.isdigit():
            return self._error("AuthFailure.InvalidAuthorization")
        if m["id"] != SECRET_ID:
            return self._error("AuthFailure.SecretIdNotFound")
        if abs(int(timestamp) - time.time()) > 300:
            return self._error("AuthFailure.SignatureExpire")
        utc_date = dt.datetime.fromtimestamp(int(timestamp), tz=dt.UTC).strftime("%Y-%m-%d")
        signed = m["signed"].split(";")
        if (m["date"] != utc_date or m["service"] != "sms" or "host" not in signed
                or "content-type" not in signed or any(n not in h for n in signed)):
            return self._error("AuthFailure.SignatureFailure")
        expected = _expected_signature(SECRET_KEY, h, m["signed"], body, timestamp,
                                       m["date"], m["service"])
        if not hmac.compare_digest(expected, m["sig"]):
            return self._error("AuthFailure.SignatureFailure")
        try:
            req = json.loads(body)
        except ValueError:
            return self._error("FailedOperation.JsonParseFail")
        if any(k not in req for k in ("PhoneNumberSet", "SmsSdkAppId", "TemplateId")):
            return self._error("MissingParameter")
        if req["SmsSdkAppId"] != APP_ID:
            return self._error("UnauthorizedOperation.SmsSdkAppIdVerifyFail")
        params = req.get("TemplateParamSet", [])
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return self._error("InvalidParameter")
        self.received.append(req)
        self.headers.append(h)
        kind, code = self.script.pop(0) if self.script else ("status", "Ok")
        if kind == "error":
            return self._error(code)
        statuses = []
        for number in req["PhoneNumberSet"]:
            ok = re.fullmatch(r"\+861\d{10}", number)
            this = code if ok else "InvalidParameterValue.IncorrectPhoneNumber"
            statuses.append({"SerialNo": "5000:1045710669157053657849499619", "Fee": 1,
                             "PhoneNumber": number, "Code": this,
                             "Message": "send success" if this == "Ok" else this.lower(),
                             "SessionContext": req.get("SessionContext", ""),
                             "IsoCode": "CN"})
        return {"SendStatusSet": statuses}

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def api() -> Iterator[FakeSmsApi]:
    fake = FakeSmsApi()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def shared_api() -> Iterator[FakeSmsApi]:
    fake = FakeSmsApi()
    yield fake
    fake.stop()


def _notifier(url: str, secret_key: str = SECRET_KEY,
              params: tuple[str, ...] = ("township", "value")) -> TencentSmsNotifier:
    return TencentSmsNotifier("tencent", secret_id=SECRET_ID, secret_key=secret_key,
                              sdk_app_id=APP_ID, sign_name="西河县生态环境", template_id="1110",
                              template_params=params, endpoint=url,
                              limiter=RateLimiter(1_000_000, 3600))  # many sends, one number


def _message(text: str = "城关镇 PM2.5 186", to: str = WORKER, n: int = 0) -> Message:
    event = {"data": {"group": "城关镇", "level": 1, "text": text, "firing": [
        {"device": "dev-a", "rule": "pm25_heavy", "value": 186.0, "severity": "warning",
         "labels": {"township": "城关镇", "grid": "g1"},
         "annotations": {"summary_zh": "城关镇政府楼顶：PM2.5 186 µg/m³"}}], "resolved": []}}
    return Message(id=f"n:{n}", channel="tencent", recipient=to, kind="notification",
                   text=text, event=event)


def test_the_documented_signature_example() -> None:
    """The worked example of the "Signature v3" page (cvm, 2019-02-25): the hashes of the
    payload and canonical request and the signature it prints."""
    payload = (b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], '
               b'"Name": "instance-name"}]}')
    canonical = sms_tencent.canonical_request("cvm.tencentcloudapi.com", payload)
    assert canonical.endswith("\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064")
    to_sign = sms_tencent.string_to_sign(1551113065, canonical, service="cvm")
    assert to_sign == ("TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n"
                       "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031")
    assert sms_tencent.signature("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", 1551113065, to_sign,
                                 service="cvm") == \
        "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"


def test_a_signed_sendsms_with_app_sign_template_and_ordered_params(api: FakeSmsApi) -> None:
    _notifier(api.url).send(_message())
    (req,) = api.received
    assert req["PhoneNumberSet"] == ["+8613800000001"]
    assert (req["SmsSdkAppId"], req["SignName"], req["TemplateId"]) == (
        APP_ID, "西河县生态环境", "1110")
    assert req["TemplateParamSet"] == ["城关镇", "186.0"]  # in template order {1}, {2}
    assert req["SessionContext"] == "n:0"
    (h,) = api.headers
    assert (h["x-tc-action"], h["x-tc-version"], h["x-tc-region"]) == (
        "SendSms", "2021-01-11", "ap-guangzhou")
    assert h["authorization"].startswith(f"TC3-HMAC-SHA256 Credential={SECRET_ID}/")
    assert "SignedHeaders=content-type;host," in h["authorization"]


def test_a_wrong_secret_key_is_refused_by_the_server_and_given_up(api: FakeSmsApi) -> None:
    with pytest.raises(DeliveryRejected, match=r"AuthFailure\.SignatureFailure"):
        _notifier(api.url, secret_key="wrong").send(_message())
    assert api.received == []


def test_a_request_signed_for_another_body_is_refused(api: FakeSmsApi) -> None:
    """The server checks the body's hash: a tampered body fails the signature."""
    import urllib.request

    n = _notifier(api.url)
    signed = n.payload(_message(text="原文"))
    headers = n.headers(signed, int(time.time()))
    tampered = signed.replace(b"+8613800000001", b"+8613900000009")
    req = urllib.request.Request(api.url, data=tampered, method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=5) as resp:
        answer = json.loads(resp.read())
    assert answer["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert api.received == []


@pytest.mark.parametrize(("kind", "code", "outcome", "after_s"), [
    # wait: flow control
    ("status", "LimitExceeded.PhoneNumberThirtySecondLimit", DeliveryRetry, 30.0),
    ("status", "LimitExceeded.PhoneNumberDailyLimit", DeliveryRetry, 3600.0),
    ("status", "LimitExceeded.DeliveryFrequencyLimit", DeliveryRetry, 60.0),
    ("error", "RequestLimitExceeded", DeliveryRetry, 10.0),
    ("error", "RequestLimitExceeded.UinLimitExceeded", DeliveryRetry, 10.0),
    # retry: the provider or the account in a passing state, or a code we do not know
    ("error", "InternalError.Timeout", DeliveryRetry, None),
    ("error", "InternalError", DeliveryRetry, None),
    ("status", "FailedOperation.InsufficientBalanceInSmsPackage", DeliveryRetry, None),
    ("error", "AuthFailure.SignatureExpire", DeliveryRetry, None),
    ("error", "UnauthorizedOperation.SerivceSuspendDueToArrears", DeliveryRetry, None),
    ("status", "FailedOperation.SomethingNew", DeliveryRetry, None),
    # give up: can never succeed as it is
    ("status", "FailedOperation.TemplateIncorrectOrUnapproved", DeliveryRejected, None),
    ("status", "FailedOperation.SignatureIncorrectOrUnapproved", DeliveryRejected, None),
    ("status", "InvalidParameterValue.TemplateParameterLengthLimit", DeliveryRejected, None),
    ("status", "FailedOperation.PhoneNumberInBlacklist", DeliveryRejected, None),
    ("error", "AuthFailure.SecretIdNotFound", DeliveryRejected, None),
    ("error", "UnauthorizedOperation.SmsSdkAppIdVerifyFail", DeliveryRejected, None),
    ("error", "MissingParameter.EmptyPhoneNumberSet", DeliveryRejected, None),
])
def test_error_codes_map_to_wait_retry_or_give_up(api: FakeSmsApi, kind: str, code: str,
                                                  outcome: type[Exception],
                                                  after_s: float | None) -> None:
    api.script = [(kind, code)]
    with pytest.raises(outcome, match=re.escape(code)) as err:
        _notifier(api.url).send(_message())
    if isinstance(err.value, DeliveryRetry):
        assert err.value.after_s == after_s
        assert err.value.counts  # a provider limit is an attempt (not our own limiter)


def test_a_number_the_provider_refuses_is_given_up(api: FakeSmsApi) -> None:
    with pytest.raises(DeliveryRejected, match=r"InvalidParameterValue\.IncorrectPhoneNumber"):
        _notifier(api.url).send(_message(to="+85212345678"))


def test_an_answer_that_is_not_sendsms_is_judged_by_its_http_status() -> None:
    n = _notifier("http://127.0.0.1:9/")
    with pytest.raises(DeliveryRetry, match="HTTP 502"):
        n._judge(502, b"<html>bad gateway</html>")
    with pytest.raises(DeliveryRejected, match="HTTP 404"):
        n._judge(404, b"not found")
    with pytest.raises(DeliveryRejected, match="HTTP 200"):  # two numbers for one message
        n._judge(200, json.dumps({"Response": {"SendStatusSet": [
            {"Code": "Ok"}, {"Code": "Ok"}]}}).encode())


def test_an_unreachable_endpoint_is_retried() -> None:
    with pytest.raises(DeliveryRetry, match="Tencent Cloud SMS"):
        _notifier("http://127.0.0.1:9/").send(_message())


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=400)


@settings(max_examples=60, deadline=None)
@given(text=TEXT, township=TEXT)
@example(text="城关镇 PM2.5 186 µg/m³，请核查！😷🌫️", township="城关镇")
@example(text="x" * 400 + "\"\\\n\t\u2028", township="\x00")
def test_any_text_reaches_the_server_intact_as_template_params(
        shared_api: FakeSmsApi, text: str, township: str) -> None:
    """Chinese, emoji, quotes, control characters, long text: signed over exactly what is
    sent, and the server's TemplateParamSet holds the message's fields as they were."""
    msg = _message(text=text)
    msg.event["data"]["firing"][0]["labels"]["township"] = township
    _notifier(shared_api.url, params=("text", "township", "device")).send(msg)
    assert shared_api.received[-1]["TemplateParamSet"] == [text, township, "dev-a"]


def test_phone_numbers() -> None:
    assert phone_number("+86 138 0000 0001") == "+8613800000001"
    assert phone_number("13800000001") == "+8613800000001"
    assert phone_number("008613800000001") == "+8613800000001"
    assert phone_number("+85212345678") == "+85212345678"


def test_the_channel_from_config_delivers_through_the_alerting_service(
        tmp_path: Path, api: FakeSmsApi) -> None:
    api.script = [("error", "InternalError.Timeout")]  # retried, then Ok
    cfg = config(
        tmp_path, event_channels=[],
        channels={"sms": {"type": "sms_tencent", "endpoint": api.url, "secret_id": SECRET_ID,
                          "secret_key": SECRET_KEY, "sdk_app_id": APP_ID,
                          "sign_name": "西河县生态环境", "template_id": "1110",
                          "backoff": "100ms", "template_params": ["township", "value"]}},
        receivers={"grid_worker": {"targets": [{"channel": "sms", "to": "grid_worker"}]}},
        route={"receiver": "grid_worker", "group_wait": "0s"})
    svc = AlertingService(cfg, Context(file="t"))
    svc.start()
    try:
        svc.handle([tr("dev-a", "firing", 186.0, T0)], T0)
        assert wait_for(lambda: len(api.received) == 2, 10)
    finally:
        svc.stop()
    assert api.received[1]["TemplateParamSet"] == ["城关镇", "186.0"]
    assert api.received[1]["PhoneNumberSet"] == [WORKER]


# --- config ----------------------------------------------------------------------------

CHANNEL = {"type": "sms_tencent", "secret_id": SECRET_ID, "secret_key": SECRET_KEY,
           "sdk_app_id": APP_ID, "sign_name": "西河县生态环境", "template_id": "1110"}


@pytest.mark.parametrize(("change", "key", "expected"), [
    ({"sign_name": None}, "sign_name", "required"),
    ({"sign_name": ""}, "sign_name", "approved SMS sign"),
    ({"sdk_app_id": None}, "sdk_app_id", "required"),
    ({"template_id": "SMS_1"}, "template_id", "an approved template ID"),
    ({"sdk_app_id": "app"}, "sdk_app_id", "SdkAppId"),
    ({"template_params": ["township", "townshp"]}, "template_params[1]", "one of"),
    ({"region": "Guangzhou"}, "region", "a region like ap-guangzhou"),
    ({"secret_key": None}, "secret_key", "required"),
])
def test_config_names_the_bad_key(tmp_path: Path, change: dict[str, Any], key: str,
                                  expected: str) -> None:
    channel = {k: v for k, v in {**CHANNEL, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        config(tmp_path, channels={"sms": channel})
    assert any(p.key == f"alerting.channels.sms.{key}" and expected in str(p)
               for p in err.value.problems), str(err.value)


def _toml(secret_key_line: str) -> str:
    return ('[alerting.channels.sms]\ntype = "sms_tencent"\n'
            f'secret_id_env = "TENCENT_SMS_SECRET_ID"\n{secret_key_line}\n'
            f'sdk_app_id = "{APP_ID}"\n'
            'sign_name = "西河县生态环境"\ntemplate_id = "1110"\n'
            'template_params = ["township", "value"]\n')


def test_secret_key_from_a_private_file_and_never_shown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENCENT_SMS_SECRET_ID", SECRET_ID)
    key_file = tmp_path / "tencent_sms_key"
    key_file.write_text(SECRET_KEY + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    f = tmp_path / "collector.toml"
    f.write_text(_toml(f'secret_key_file = "{key_file}"'), encoding="utf-8")
    f.chmod(0o644)  # holds no secret value itself
    channel = collector_config.load(f).alerting.channels["sms"]
    assert (channel.secret_id, channel.secret_key) == (  # type: ignore[union-attr]
        SECRET_ID, SECRET_KEY)
    # the same key written in a file others can read is refused, and not repeated
    f.write_text(_toml(f'secret_key = "{SECRET_KEY}"'), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        collector_config.load(f)
    assert "alerting.channels.sms.secret_key: expected a file others cannot read" \
        in str(err.value)
    assert SECRET_KEY not in str(err.value)
    # a bad value is reported without showing it
    f.write_text(_toml("secret_key = 12345678901"), encoding="utf-8")
    f.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        collector_config.load(f)
    assert "alerting.channels.sms.secret_key" in str(err.value)
    assert "12345678901" not in str(err.value)


def test_the_documented_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "alerting.md").read_text("utf-8")
    block = re.search(r"```\n *(\[alerting\.channels\.tencent\]\n.*?)```", doc, re.S)
    assert block is not None
    key_file = tmp_path / "key"
    key_file.write_text(SECRET_KEY, encoding="utf-8")
    key_file.chmod(0o600)
    text = re.sub(r'secret_key_file = "[^"]*"', f'secret_key_file = "{key_file}"',
                  block.group(1))
    f = tmp_path / "collector.toml"
    f.write_text(text, encoding="utf-8")
    monkeypatch.setenv("TENCENT_SMS_SECRET_ID", SECRET_ID)
    spec = collector_config.load(f).alerting.channels["tencent"]
    assert spec.template_params == ["township", "value"]  # type: ignore[union-attr]
    assert spec.secret_key == SECRET_KEY  # type: ignore[union-attr]
