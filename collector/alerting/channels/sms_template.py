"""The fields a cloud SMS template may be filled from (Alibaba Cloud, Tencent Cloud).

Chinese SMS providers send only pre-approved templates; a channel's config names which
notification field fills each template variable. FIELDS is what configs are checked
against (settings.py); `values()` reads them from a notification: its CloudEvent data
and, for the alert-level fields, its first firing alert.
"""

from __future__ import annotations

from typing import Any

from collector.alerting.model import Message

FIELDS = ("text", "group", "level", "firing", "resolved", "device", "rule", "value",
          "severity", "township", "grid", "summary_zh", "summary_en")


def values(msg: Message) -> dict[str, str]:
    """Every field of FIELDS for `msg`, as text ("" where the notification has none)."""
    data: dict[str, Any] = msg.event.get("data", {}) if isinstance(msg.event, dict) else {}
    firing = data.get("firing") or []
    first: dict[str, Any] = firing[0] if firing else data
    labels = first.get("labels") or {}
    annotations = first.get("annotations") or {}
    out = {"text": msg.text, "group": data.get("group", ""), "level": data.get("level", ""),
           "firing": len(firing), "resolved": len(data.get("resolved") or []),
           "device": first.get("device", ""), "rule": first.get("rule", ""),
           "value": first.get("value", ""), "severity": first.get("severity", ""),
           "township": labels.get("township", ""), "grid": labels.get("grid", ""),
           "summary_zh": annotations.get("summary_zh", ""),
           "summary_en": annotations.get("summary_en", "")}
    return {k: "" if v is None else str(v) for k, v in out.items()}
