"""The explicit registry of channel types: config `type = "..."` → a Notifier factory."""

from __future__ import annotations

from collections.abc import Callable

from collector.alerting.channels import (
    mqtt_bus,
    sms_aliyun,
    sms_gateway,
    sms_modem,
    sms_tencent,
    webhook,
)
from collector.alerting.channels.notifier import Context, Notifier
from collector.alerting.config import ChannelSpec

Factory = Callable[[ChannelSpec, Context], Notifier]

CHANNEL_TYPES: dict[str, Factory] = {
    "mqtt": mqtt_bus.from_spec,
    "webhook": webhook.from_spec,
    "sms_modem": sms_modem.from_spec,
    "sms_gateway": sms_gateway.from_spec,
    "sms_aliyun": sms_aliyun.from_spec,
    "sms_tencent": sms_tencent.from_spec,
}


def build(spec: ChannelSpec, ctx: Context,
          types: dict[str, Factory] | None = None) -> Notifier:
    known = CHANNEL_TYPES if types is None else types
    factory = known.get(spec.type)
    if factory is None:  # the config's channel types and this registry disagree
        raise ValueError(f"channel {spec.name}: no factory for type {spec.type!r}")
    return factory(spec, ctx)
