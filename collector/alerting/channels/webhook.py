"""Webhook channel: the CloudEvent JSON POSTed, signed HMAC-SHA256 over timestamp + body.

Timeouts, connection errors, 408, 429 and 5xx are retried (the delivery stage backs off);
any other 4xx means the receiver will never take it: dead letter at once.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from collector.alerting.channels.notifier import Address, Context, one_by_one
from collector.alerting.channels.settings import WebhookChannel
from collector.alerting.channels.webhook_verify import DELIVERY_HEADER, HEADER, sign
from collector.alerting.config import ChannelSpec
from collector.alerting.errors import DeliveryRejected, DeliveryRetry
from collector.alerting.model import Message

RETRY_STATUS = {408, 429}


class WebhookNotifier:
    address: Address = "none"

    def __init__(self, name: str, url: str, secret: str, timeout_s: float = 5.0,
                 headers: dict[str, str] | None = None) -> None:
        self.name = name
        self.url = url
        self.secret = secret.encode()
        self.timeout = timeout_s
        self.headers = dict(headers or {})

    def start(self) -> None:
        pass

    def send(self, msg: Message) -> None:
        body = json.dumps(msg.event, ensure_ascii=False).encode()
        ts = int(time.time())
        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            **self.headers, "Content-Type": "application/cloudevents+json; charset=utf-8",
            HEADER: sign(self.secret, ts, body), DELIVERY_HEADER: msg.id,
        })
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code in RETRY_STATUS:
                after = exc.headers.get("Retry-After") if exc.headers else None
                raise DeliveryRetry(f"HTTP {exc.code} from {self.url}",
                                    after_s=float(after) if after and after.isdigit() else None
                                    ) from exc
            raise DeliveryRejected(f"HTTP {exc.code} from {self.url}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise DeliveryRetry(f"{self.url}: {exc}") from exc

    def send_many(self, msgs: list[Message]) -> list[Exception | None]:
        return one_by_one(self, msgs)

    def close(self) -> None:
        pass


def from_spec(spec: ChannelSpec, ctx: Context) -> WebhookNotifier:
    o = spec.settings
    assert isinstance(o, WebhookChannel)
    return WebhookNotifier(spec.name, o.url, o.secret, o.timeout_s, o.headers)
