"""SMS through Tencent Cloud SMS (腾讯云短信), API `SendSms`, version 2021-01-11.

Like every Chinese SMS provider, Tencent sends only pre-approved templates: the request
names the SMS application (`SmsSdkAppId`), the approved sign (签名, `SignName`), the
template (`TemplateId`) and the values of the template's variables {1}, {2}, … as a list
of strings in that order (`TemplateParamSet`). `template_params` lists, in template
order, the notification field (sms_template.FIELDS) that fills each variable.

Request (SendSms, https://cloud.tencent.com/document/api/382/55981): a JSON POST to
sms.tencentcloudapi.com with the common parameters as headers X-TC-Action, X-TC-Version,
X-TC-Timestamp, X-TC-Region. Signature as "Signature v3" (TC3-HMAC-SHA256) of TencentCloud
API 3.0 describes it (https://www.tencentcloud.com/document/product/382/40467):
  1. CanonicalRequest = "POST" \\n "/" \\n "" (no query) \\n CanonicalHeaders \\n
     SignedHeaders \\n Lowercase(HexEncode(SHA256(payload))), where CanonicalHeaders is
     "content-type:…\\nhost:…\\n" (names and values lowercased and trimmed, sorted by
     name) and SignedHeaders "content-type;host";
  2. StringToSign = "TC3-HMAC-SHA256" \\n X-TC-Timestamp \\n CredentialScope \\n
     Lowercase(HexEncode(SHA256(CanonicalRequest))), CredentialScope = Date/sms/tc3_request
     with Date the UTC date (YYYY-MM-DD) of the timestamp;
  3. SecretDate = HMAC-SHA256("TC3" + SecretKey, Date), SecretService = HMAC-SHA256(
     SecretDate, "sms"), SecretSigning = HMAC-SHA256(SecretService, "tc3_request"),
     Signature = HexEncode(HMAC-SHA256(SecretSigning, StringToSign));
  4. Authorization = "TC3-HMAC-SHA256 Credential=" SecretId "/" CredentialScope
     ", SignedHeaders=content-type;host, Signature=" Signature.
The documentation's worked example (cvm, 1551113065) is a test of `signature()`.

The answer is JSON under `Response`: `Error.Code` when the whole request failed,
otherwise one `SendStatusSet` entry per number whose `Code` is "Ok" or an error code
(error codes: https://cloud.tencent.com/document/api/382/52075). Codes are mapped to
give up, wait or retry below, the way sms_aliyun.py does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import urllib.parse
from collections.abc import Sequence
from typing import Any

from collector.alerting.channels import sms_http, sms_template
from collector.alerting.channels.notifier import Address, Context, one_by_one
from collector.alerting.channels.rate_limit import RateLimiter
from collector.alerting.channels.settings import TencentSmsChannel
from collector.alerting.config import ChannelSpec
from collector.alerting.errors import DeliveryRejected, DeliveryRetry
from collector.alerting.model import Message

API_VERSION = "2021-01-11"
ACTION = "SendSms"
SERVICE = "sms"  # the credential scope's service: the product's domain prefix
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json; charset=utf-8"
SIGNED_HEADERS = "content-type;host"

# Give up: the request can never succeed as it is (a wrong key, app, sign, template,
# parameter or number; fix the config, the message is dead-lettered where operators see
# it). Whole families, by prefix, from the common and SendSms error code lists …
GIVE_UP_FAMILIES = ("AuthFailure.", "InvalidParameter", "MissingParameter",
                    "UnauthorizedOperation.", "UnsupportedOperation.", "InvalidAction",
                    "ActionOffline", "NoSuchProduct", "NoSuchVersion", "InvalidRequest",
                    "IpInBlacklist", "IpNotInWhitelist")
# … and single codes of otherwise passing families.
GIVE_UP = frozenset({
    "FailedOperation.TemplateIncorrectOrUnapproved",
    "FailedOperation.SignatureIncorrectOrUnapproved",
    "FailedOperation.ContainSensitiveWord", "FailedOperation.PhoneNumberInBlacklist",
    "FailedOperation.PhoneNumberOnBlacklist", "FailedOperation.FailResolvePacket",
    "FailedOperation.JsonParseFail", "FailedOperation.MissingSignatureList",
    "FailedOperation.MissingTemplateList", "LimitExceeded.PhoneNumberCountLimit",
})
# Passing states inside give-up families: a clock more than five minutes off (fixed once
# NTP has synchronised) and a service suspended for arrears (fixed once topped up).
RETRY_IN_GIVE_UP_FAMILIES = frozenset({"AuthFailure.SignatureExpire",
                                       "UnauthorizedOperation.SerivceSuspendDueToArrears"})
# Flow control: per-number limits per 30 s / hour / day, the application's daily limit,
# API call frequency; worth waiting for.
RATE_LIMITED = {"LimitExceeded.PhoneNumberThirtySecondLimit": 30.0,
                "LimitExceeded.DeliveryFrequencyLimit": 60.0,
                "LimitExceeded.PhoneNumberOneHourLimit": 3600.0,
                "LimitExceeded.PhoneNumberDailyLimit": 3600.0,
                "LimitExceeded.PhoneNumberSameContentDailyLimit": 3600.0,
                "LimitExceeded.AppDailyLimit": 3600.0, "LimitExceeded.DailyLimit": 3600.0,
                "FailedOperation.MarketingSendTimeConstraint": 3600.0}
RATE_LIMITED_FAMILY = "RequestLimitExceeded"  # API calls per second: 10 s
RATE_LIMITED_FAMILY_WAIT_S = 10.0
# Everything else (InternalError.*, FailedOperation.InsufficientBalanceInSmsPackage while
# the package is topped up, unknown codes) is retried until max_attempts.


def give_up(code: str) -> bool:
    if code in RETRY_IN_GIVE_UP_FAMILIES:
        return False
    return code in GIVE_UP or code.startswith(GIVE_UP_FAMILIES)


def wait_s(code: str) -> float | None:
    """How long flow control `code` asks to wait, or None when it is not flow control."""
    if code in RATE_LIMITED:
        return RATE_LIMITED[code]
    if code == RATE_LIMITED_FAMILY or code.startswith(RATE_LIMITED_FAMILY + "."):
        return RATE_LIMITED_FAMILY_WAIT_S
    return None


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def credential_date(timestamp: int) -> str:
    """The UTC date of the timestamp (never local time: Beijing's 00:44 is UTC's day before)."""
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).strftime("%Y-%m-%d")


def canonical_request(host: str, payload: bytes, content_type: str = CONTENT_TYPE) -> str:
    headers = f"content-type:{content_type.strip().lower()}\nhost:{host.strip().lower()}\n"
    return f"POST\n/\n\n{headers}\n{SIGNED_HEADERS}\n{_sha256_hex(payload)}"


def string_to_sign(timestamp: int, canonical: str, service: str = SERVICE) -> str:
    scope = f"{credential_date(timestamp)}/{service}/tc3_request"
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{_sha256_hex(canonical.encode())}"


def signature(secret_key: str, timestamp: int, to_sign: str, service: str = SERVICE) -> str:
    date_key = _hmac(f"TC3{secret_key}".encode(), credential_date(timestamp))
    signing_key = _hmac(_hmac(date_key, service), "tc3_request")
    return hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(secret_id: str, secret_key: str, timestamp: int, host: str,
                  payload: bytes, service: str = SERVICE) -> str:
    to_sign = string_to_sign(timestamp, canonical_request(host, payload), service)
    return (f"{ALGORITHM} Credential={secret_id}/{credential_date(timestamp)}/{service}/"
            f"tc3_request, SignedHeaders={SIGNED_HEADERS}, "
            f"Signature={signature(secret_key, timestamp, to_sign, service)}")


def phone_number(recipient: str) -> str:
    """E.164 as SendSms wants it: +8613800000000. A bare 11-digit mainland mobile number
    and the 0086 prefix are written as +86; other numbers must carry their country code."""
    number = recipient.strip().replace(" ", "").replace("-", "")
    if number.startswith("00"):
        return "+" + number[2:]
    if len(number) == 11 and number.isdigit() and number.startswith("1"):
        return "+86" + number
    return number


class TencentSmsNotifier:
    address: Address = "phone"

    def __init__(self, name: str, *, secret_id: str, secret_key: str, sdk_app_id: str,
                 sign_name: str, template_id: str, template_params: Sequence[str],
                 endpoint: str = "https://sms.tencentcloudapi.com/",
                 region: str = "ap-guangzhou", timeout_s: float = 10.0,
                 limiter: RateLimiter | None = None) -> None:
        self.name = name
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.sdk_app_id = sdk_app_id
        self.sign_name = sign_name
        self.template_id = template_id
        self.template_params = list(template_params)
        self.endpoint = endpoint
        # The host the request goes to is the host it is signed for.
        self.host = urllib.parse.urlsplit(endpoint).netloc.rsplit("@", 1)[-1]
        self.region = region
        self.timeout = timeout_s
        self.limiter = limiter or RateLimiter(6, 3600)

    def payload(self, msg: Message) -> bytes:
        """The SendSms body for one message. ASCII JSON (non-ASCII as \\u escapes, as the
        documentation's examples send it): what is hashed is exactly what is sent."""
        fields = sms_template.values(msg)
        body = {"PhoneNumberSet": [phone_number(msg.recipient)],
                "SmsSdkAppId": self.sdk_app_id, "SignName": self.sign_name,
                "TemplateId": self.template_id,
                "TemplateParamSet": [fields[f] for f in self.template_params],
                # Our message id, returned as is: delivery receipts can be matched to it.
                "SessionContext": msg.id[:500]}
        return json.dumps(body, separators=(",", ":")).encode("ascii")

    def headers(self, payload: bytes, timestamp: int) -> dict[str, str]:
        return {"Content-Type": CONTENT_TYPE, "Host": self.host, "X-TC-Action": ACTION,
                "X-TC-Version": API_VERSION, "X-TC-Timestamp": str(timestamp),
                "X-TC-Region": self.region,
                "Authorization": authorization(self.secret_id, self.secret_key, timestamp,
                                               self.host, payload)}

    def start(self) -> None:
        pass

    def send(self, msg: Message) -> None:
        now = sms_http.admit(self.limiter, msg.recipient)
        payload = self.payload(msg)
        status, answer = sms_http.post("Tencent Cloud SMS", self.endpoint, payload,
                                       self.headers(payload, int(now)), self.timeout)
        self._judge(status, answer)
        self.limiter.record(msg.recipient, now)

    def _judge(self, status: int, answer: bytes) -> None:
        code, text = _code(answer)
        if code is None:
            raise sms_http.unexplained(
                status, f"HTTP {status} without a SendSms answer: {answer[:200]!r}")
        if code == "Ok":
            return
        what = f"Tencent Cloud SMS {code}: {text}"
        if give_up(code):
            raise DeliveryRejected(what)
        after = wait_s(code)
        raise DeliveryRetry(what, after_s=after)

    def send_many(self, msgs: list[Message]) -> list[Exception | None]:
        return one_by_one(self, msgs)

    def close(self) -> None:
        pass


def _code(answer: bytes) -> tuple[str | None, str]:
    """(code, message) of a SendSms answer for one number; (None, "") when it is none."""
    try:
        resp: Any = json.loads(answer)["Response"]
        if "Error" in resp:
            return str(resp["Error"]["Code"]), str(resp["Error"].get("Message", ""))
        (one,) = resp["SendStatusSet"]  # one number per request
        return str(one["Code"]), str(one.get("Message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, ""


def from_spec(spec: ChannelSpec, ctx: Context) -> TencentSmsNotifier:
    o = spec.settings
    assert isinstance(o, TencentSmsChannel)
    return TencentSmsNotifier(
        spec.name, secret_id=o.secret_id, secret_key=o.secret_key, sdk_app_id=o.sdk_app_id,
        sign_name=o.sign_name, template_id=o.template_id,
        template_params=o.template_params, endpoint=o.endpoint, region=o.region,
        timeout_s=o.timeout_s,
        limiter=RateLimiter(o.per_recipient, o.per_recipient_window_ms / 1000))
