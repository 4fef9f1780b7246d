"""The config of every channel type: `[alerting.channels.NAME]` tables, picked by `type`.

They are part of the collector's config struct, so `check-config` validates a channel's
settings (a webhook secret's length, a gateway's body template) exactly as `run` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from airgrid.config import Invalid, Parse, Section
from airgrid.durations import parse_duration_ms
from collector.alerting.channels import sms_template

Duration = Annotated[int, Parse(parse_duration_ms, "a duration like 30s, 5m, 4h")]
Port = Annotated[int, Meta(gt=0, lt=65536, description="a TCP port")]
Seconds = Annotated[float, Meta(gt=0, description="seconds > 0")]
HttpUrl = Annotated[str, Meta(pattern=r"^https?://", description="an http(s) URL")]
PerRecipient = Annotated[int, Meta(ge=1, description="messages >= 1")]
Headers = dict[str, str]


class ChannelSettings(Section, frozen=True, tag_field="type"):
    """What every channel has: how its delivery worker retries."""

    max_attempts: Annotated[int, Meta(ge=1, description="an integer >= 1")] = 8
    backoff_ms: Duration = msgspec.field(default=1000, name="backoff")
    max_backoff_ms: Duration = msgspec.field(default=300_000, name="max_backoff")


class MqttChannel(ChannelSettings, frozen=True, tag="mqtt", kw_only=True):
    """Unset host, port, account: the collector's own broker, over its own connection."""

    host: str | None = None
    port: Port | None = None
    username: str | None = None
    password: str | None = None
    prefix: str | None = None
    client_id: str | None = None
    qos: Annotated[Literal[0, 1, 2], Meta(description="0, 1 or 2")] = 1
    puback_timeout_s: Seconds = 10.0


class WebhookChannel(ChannelSettings, frozen=True, tag="webhook", kw_only=True):
    url: HttpUrl
    secret: Annotated[str, Meta(min_length=16,
                                description="a shared secret of at least 16 characters")]
    timeout_s: Seconds = 5.0
    headers: Headers = msgspec.field(default_factory=dict)


class SmsModemChannel(ChannelSettings, frozen=True, tag="sms_modem", kw_only=True):
    port: Annotated[str, Meta(description="a serial device path, e.g. /dev/ttyUSB2")]
    baudrate: Annotated[int, Meta(gt=0, description="a baud rate")] = 115200
    timeout_s: Seconds = 30.0
    per_recipient: PerRecipient = 6
    per_recipient_window_ms: Duration = msgspec.field(default=3_600_000,
                                                      name="per_recipient_window")
    text_mode: bool = True


class SmsGatewayChannel(ChannelSettings, frozen=True, tag="sms_gateway", kw_only=True):
    url: HttpUrl
    body_template: Annotated[str, Meta(description="a body with {to} and {text}")]
    encoding: Annotated[Literal["json", "form"], Meta(description='"json" or "form"')] = "json"
    content_type: str | None = None
    username: str | None = None
    password: str | None = None
    token: str | None = None
    headers: Headers = msgspec.field(default_factory=dict)
    success_contains: Annotated[str, Meta(description="text a successful response "
                                                      "contains")] = ""
    timeout_s: Seconds = 10.0
    per_recipient: PerRecipient = 6
    per_recipient_window_ms: Duration = msgspec.field(default=3_600_000,
                                                      name="per_recipient_window")

    def problems(self) -> Iterator[Invalid]:
        if "{to}" not in self.body_template or "{text}" not in self.body_template:
            yield Invalid("body_template", "a body with {to} and {text}", self.body_template)


# Template variables may name these fields (collector/alerting/channels/sms_template.py).
TEMPLATE_FIELDS = sms_template.FIELDS


class AliyunSmsChannel(ChannelSettings, frozen=True, tag="sms_aliyun", kw_only=True):
    """Alibaba Cloud SMS SendSms: an approved template, its sign and variables."""

    api_key: Annotated[str, Meta(min_length=1, description="the AccessKey ID")]
    api_secret: Annotated[str, Meta(min_length=1, description="the AccessKey secret")]
    sign_name: Annotated[str, Meta(min_length=1, description="the approved SMS sign "
                                                             "(签名), e.g. 某某县环保")]
    template_code: Annotated[str, Meta(pattern=r"^SMS_\d+$", description="a template "
                                       "code like SMS_123456789")]
    # template variable → notification field, e.g. { area = "township", pm = "value" }
    template_params: dict[str, str] = msgspec.field(default_factory=dict)
    endpoint: HttpUrl = "https://dysmsapi.aliyuncs.com/"
    region: str = "cn-hangzhou"
    timeout_s: Seconds = 10.0
    per_recipient: PerRecipient = 6
    per_recipient_window_ms: Duration = msgspec.field(default=3_600_000,
                                                      name="per_recipient_window")

    def problems(self) -> Iterator[Invalid]:
        for var, field in self.template_params.items():
            if field not in TEMPLATE_FIELDS:
                yield Invalid(f"template_params.{var}", f"one of {list(TEMPLATE_FIELDS)}",
                              field)


class TencentSmsChannel(ChannelSettings, frozen=True, tag="sms_tencent", kw_only=True):
    """Tencent Cloud SMS SendSms (2021-01-11): an application, an approved sign and
    template, and the template's parameters in order."""

    secret_id: Annotated[str, Meta(min_length=1, description="the API key's SecretId")]
    secret_key: Annotated[str, Meta(min_length=1, description="the API key's SecretKey")]
    sdk_app_id: Annotated[str, Meta(pattern=r"^\d+$", description="the SMS application's "
                                    "SdkAppId, e.g. 1400006666")]
    sign_name: Annotated[str, Meta(min_length=1, description="the approved SMS sign "
                                                             "(签名), e.g. 某某县环保")]
    template_id: Annotated[str, Meta(pattern=r"^\d+$", description="an approved template "
                                     "ID, e.g. 1110")]
    # notification fields in the template's order: {1}, {2}, … e.g. ["township", "value"]
    template_params: list[str] = msgspec.field(default_factory=list)
    endpoint: HttpUrl = "https://sms.tencentcloudapi.com/"
    region: Annotated[str, Meta(pattern=r"^[a-z]+(-[a-z]+)+$",
                                description="a region like ap-guangzhou")] = "ap-guangzhou"
    timeout_s: Seconds = 10.0
    per_recipient: PerRecipient = 6
    per_recipient_window_ms: Duration = msgspec.field(default=3_600_000,
                                                      name="per_recipient_window")

    def problems(self) -> Iterator[Invalid]:
        for i, field in enumerate(self.template_params):
            if field not in TEMPLATE_FIELDS:
                yield Invalid(f"template_params[{i}]", f"one of {list(TEMPLATE_FIELDS)}", field)


Channel = (MqttChannel | WebhookChannel | SmsModemChannel | SmsGatewayChannel
           | AliyunSmsChannel | TencentSmsChannel)
