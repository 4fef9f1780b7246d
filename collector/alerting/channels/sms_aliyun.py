"""SMS through Alibaba Cloud SMS (阿里云短信服务), API `SendSms`, version 2017-05-25.

Chinese SMS providers send only pre-approved templates: the request names a sign (签名,
`SignName`), a template (`TemplateCode`, e.g. SMS_123456789) and the values of the
template's variables as a JSON object (`TemplateParam`). `template_params` maps each
template variable to a field of the notification (TEMPLATE_FIELDS).

Request and signature as the Alibaba Cloud SMS documentation ("Signature method", RPC
style, SignatureMethod HMAC-SHA1, SignatureVersion 1.0) describes:
  1. every parameter except Signature, sorted by name; names and values percent-encoded
     in UTF-8 per RFC 3986 (A-Z a-z 0-9 - _ . ~ kept; space is %20, not +), joined as
     name=value with &;
  2. StringToSign = HTTPMethod & percentEncode("/") & percentEncode(step 1);
  3. Signature = Base64(HMAC-SHA1(key = AccessKeySecret + "&", StringToSign)).
The parameters travel as an application/x-www-form-urlencoded POST body (a GET would put
phone numbers into every proxy's log). The answer is JSON: `Code` "OK" is success; other
codes are mapped to retry or give up below.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
import urllib.parse
import uuid
from collections.abc import Mapping

from collector.alerting.channels import sms_http, sms_template
from collector.alerting.channels.notifier import Address, Context, one_by_one
from collector.alerting.channels.rate_limit import RateLimiter
from collector.alerting.channels.settings import AliyunSmsChannel
from collector.alerting.config import ChannelSpec
from collector.alerting.errors import DeliveryRejected, DeliveryRetry
from collector.alerting.model import Message

API_VERSION = "2017-05-25"
# Codes from the SendSms error code list. Give up: the request can never succeed as it
# is (a wrong number, template, sign or key: fix the config, the message is dead-lettered
# where operators see it). Retry: the provider or the account is in a passing state.
GIVE_UP = frozenset({
    "isv.MOBILE_NUMBER_ILLEGAL", "isv.MOBILE_COUNT_OVER_LIMIT",
    "isv.SMS_TEMPLATE_ILLEGAL", "isv.SMS_SIGNATURE_ILLEGAL", "isv.SMS_SIGN_ILLEGAL",
    "isv.TEMPLATE_MISSING_PARAMETERS", "isv.TEMPLATE_PARAMS_ILLEGAL",
    "isv.INVALID_PARAMETERS", "isv.INVALID_JSON_PARAM", "isv.PARAM_LENGTH_LIMIT",
    "isv.PARAM_NOT_SUPPORT_URL", "isv.SMS_CONTENT_ILLEGAL", "isv.BLACK_KEY_CONTROL_LIMIT",
    "isv.ACCOUNT_NOT_EXISTS", "isv.ACCOUNT_ABNORMAL", "isv.PRODUCT_UN_SUBSCRIPT",
    "isv.PRODUCT_UNSUBSCRIBE", "isv.DENY_IP_RANGE", "isp.RAM_PERMISSION_DENY",
    "SignatureDoesNotMatch", "InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive",
    "IncompleteSignature", "MissingParameter", "InvalidVersion", "InvalidAction.NotFound",
})
# Flow control: per-number limits are per minute / hour / day; worth waiting for.
RATE_LIMITED = {"isv.BUSINESS_LIMIT_CONTROL": 60.0, "isv.DAY_LIMIT_CONTROL": 3600.0,
                "Throttling.User": 10.0, "Throttling": 10.0}
# Everything else (isp.SYSTEM_ERROR, ServiceUnavailable, isv.OUT_OF_SERVICE and
# isv.AMOUNT_NOT_ENOUGH while the account is topped up, SignatureNonceUsed,
# InvalidTimeStamp.Expired, unknown codes) is retried until max_attempts.

#: What `template_params` may name; settings.py checks configs against it.
TEMPLATE_FIELDS = sms_template.FIELDS
template_fields = sms_template.values


def percent_encode(text: str) -> str:
    """RFC 3986 as the signature method wants it: only A-Z a-z 0-9 - _ . ~ stay."""
    return urllib.parse.quote(text, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def signature(secret: str, method: str, params: Mapping[str, str]) -> str:
    mac = hmac.new(f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def phone_number(recipient: str) -> str:
    """+8613800000000 → 13800000000 (mainland numbers are sent without the country code);
    other countries as country code and number without '+' (Alibaba Cloud's format)."""
    number = recipient.strip().replace(" ", "")
    if number.startswith("+86"):
        return number[3:]
    return number.removeprefix("+").removeprefix("00")


class AliyunSmsNotifier:
    address: Address = "phone"

    def __init__(self, name: str, *, access_key_id: str, access_key_secret: str,
                 sign_name: str, template_code: str, template_params: Mapping[str, str],
                 endpoint: str = "https://dysmsapi.aliyuncs.com/", region: str = "cn-hangzhou",
                 timeout_s: float = 10.0, limiter: RateLimiter | None = None) -> None:
        self.name = name
        self.key_id = access_key_id
        self.secret = access_key_secret
        self.sign_name = sign_name
        self.template_code = template_code
        self.template_params = dict(template_params)
        self.endpoint = endpoint
        self.region = region
        self.timeout = timeout_s
        self.limiter = limiter or RateLimiter(6, 3600)

    def params(self, msg: Message, now: float | None = None, nonce: str | None = None
               ) -> dict[str, str]:
        """The signed request parameters for one message."""
        fields = template_fields(msg)
        at = dt.datetime.fromtimestamp(time.time() if now is None else now, tz=dt.UTC)
        params = {
            "AccessKeyId": self.key_id, "Action": "SendSms", "Format": "JSON",
            "RegionId": self.region, "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": nonce or uuid.uuid4().hex, "SignatureVersion": "1.0",
            "Timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "Version": API_VERSION,
            "PhoneNumbers": phone_number(msg.recipient), "SignName": self.sign_name,
            "TemplateCode": self.template_code,
            "TemplateParam": json.dumps({var: fields[field] for var, field in
                                         sorted(self.template_params.items())},
                                        ensure_ascii=False, separators=(",", ":")),
            # Our message id: the provider's delivery receipts can be matched to it.
            "OutId": msg.id[:64],
        }
        params["Signature"] = signature(self.secret, "POST", params)
        return params

    def start(self) -> None:
        pass

    def send(self, msg: Message) -> None:
        now = sms_http.admit(self.limiter, msg.recipient)
        body = urllib.parse.urlencode(self.params(msg, now), quote_via=urllib.parse.quote)
        status, answer = sms_http.post(
            "Alibaba Cloud SMS", self.endpoint, body.encode(),
            {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, self.timeout)
        self._judge(status, answer)
        self.limiter.record(msg.recipient, now)

    def _judge(self, status: int, answer: bytes) -> None:
        try:
            doc = json.loads(answer)
            code, text = str(doc["Code"]), str(doc.get("Message", ""))
        except (ValueError, KeyError, TypeError):
            raise sms_http.unexplained(
                status, f"HTTP {status} without a SendSms answer: {answer[:200]!r}") from None
        if code == "OK":
            return
        what = f"Alibaba Cloud SMS {code}: {text}"
        if code in GIVE_UP:
            raise DeliveryRejected(what)
        if code in RATE_LIMITED:
            raise DeliveryRetry(what, after_s=RATE_LIMITED[code])
        raise DeliveryRetry(what)

    def send_many(self, msgs: list[Message]) -> list[Exception | None]:
        return one_by_one(self, msgs)

    def close(self) -> None:
        pass


def from_spec(spec: ChannelSpec, ctx: Context) -> AliyunSmsNotifier:
    o = spec.settings
    assert isinstance(o, AliyunSmsChannel)
    return AliyunSmsNotifier(
        spec.name, access_key_id=o.api_key, access_key_secret=o.api_secret,
        sign_name=o.sign_name, template_code=o.template_code,
        template_params=o.template_params, endpoint=o.endpoint, region=o.region,
        timeout_s=o.timeout_s,
        limiter=RateLimiter(o.per_recipient, o.per_recipient_window_ms / 1000))
