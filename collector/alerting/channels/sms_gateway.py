"""SMS through an HTTP gateway: URL, auth and a body template from config.

The template is the request body with placeholders `{to}`, `{text}` and `{id}`, each
replaced by its value as a JSON string (quotes included), so a JSON template stays valid:
    body_template = '{"mobile": {to}, "content": {text}, "requestId": {id}}'
For form bodies set `encoding = "form"`: values are then URL-encoded without quotes.
"""

from __future__ import annotations

import base64
import json
import urllib.parse

from collector.alerting.channels import sms_http
from collector.alerting.channels.notifier import Address, Context, one_by_one
from collector.alerting.channels.rate_limit import RateLimiter
from collector.alerting.channels.settings import SmsGatewayChannel
from collector.alerting.config import ChannelSpec
from collector.alerting.errors import DeliveryRetry
from collector.alerting.model import Message


class GatewayNotifier:
    address: Address = "phone"

    def __init__(self, name: str, url: str, body_template: str, encoding: str = "json",
                 content_type: str | None = None, headers: dict[str, str] | None = None,
                 success_contains: str = "", timeout_s: float = 10.0,
                 limiter: RateLimiter | None = None) -> None:
        self.name = name
        self.url = url
        self.template = body_template
        self.encoding = encoding
        self.content_type = content_type or (
            "application/json; charset=utf-8" if encoding == "json"
            else "application/x-www-form-urlencoded")
        self.headers = dict(headers or {})
        self.success_contains = success_contains
        self.timeout = timeout_s
        self.limiter = limiter or RateLimiter(6, 3600)

    def body(self, msg: Message) -> bytes:
        def enc(v: str) -> str:
            return json.dumps(v, ensure_ascii=False) if self.encoding == "json" \
                else urllib.parse.quote(v)
        out = self.template
        for key, value in (("to", msg.recipient), ("text", msg.text), ("id", msg.id)):
            out = out.replace("{" + key + "}", enc(value))
        return out.encode()

    def start(self) -> None:
        pass

    def send(self, msg: Message) -> None:
        now = sms_http.admit(self.limiter, msg.recipient)
        status, raw = sms_http.post("gateway", self.url, self.body(msg),
                                    {**self.headers, "Content-Type": self.content_type},
                                    self.timeout)
        if status >= 400:
            raise sms_http.unexplained(status, f"gateway HTTP {status}")
        answer = raw.decode(errors="replace")
        if self.success_contains and self.success_contains not in answer:
            raise DeliveryRetry(f"gateway answered without {self.success_contains!r}: "
                                f"{answer[:200]!r}")
        self.limiter.record(msg.recipient, now)

    def send_many(self, msgs: list[Message]) -> list[Exception | None]:
        return one_by_one(self, msgs)

    def close(self) -> None:
        pass


def from_spec(spec: ChannelSpec, ctx: Context) -> GatewayNotifier:
    o = spec.settings
    assert isinstance(o, SmsGatewayChannel)
    headers = dict(o.headers)
    if o.token:
        headers["Authorization"] = f"Bearer {o.token}"
    elif o.username:
        cred = base64.b64encode(f"{o.username}:{o.password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {cred}"
    return GatewayNotifier(spec.name, o.url, o.body_template, o.encoding, o.content_type,
                           headers, o.success_contains, o.timeout_s,
                           RateLimiter(o.per_recipient, o.per_recipient_window_ms / 1000))
