"""Decode and validate `up` payloads in one msgspec pass (ranges checked in C).

Mirrors `airgrid.wire.Reading` field for field (a test keeps them equal) but carries the
plausibility limits as msgspec constraints, so a batch of readings is range-checked while
it is parsed instead of by a Python loop per reading.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from airgrid.wire import (
    COUNT_MAX,
    DEVICE_ID_RE,
    PM_MAX_UG_M3,
    SCHEMA_VERSION,
    WireError,
)

Pm = Annotated[float, msgspec.Meta(ge=0.0, le=PM_MAX_UG_M3)]
Count = Annotated[int, msgspec.Meta(ge=0, le=COUNT_MAX)]
Flag = Literal[
    "warming_up", "stuck", "out_of_range", "inconsistent", "high_humidity", "clock_unsynced"
]


class CheckedReading(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A reading whose ranges msgspec has checked (same names as airgrid.wire.Reading)."""

    seq: Annotated[int, msgspec.Meta(ge=1)]
    ts: Annotated[int, msgspec.Meta(gt=0)]
    sensor: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    pm1_0: Pm | None = None
    pm2_5: Pm | None = None
    pm10: Pm | None = None
    pm1_0_cf1: Pm | None = None
    pm2_5_cf1: Pm | None = None
    pm10_cf1: Pm | None = None
    n0_3: Count | None = None
    n0_5: Count | None = None
    n1_0: Count | None = None
    n2_5: Count | None = None
    n5_0: Count | None = None
    n10: Count | None = None
    temperature_c: Annotated[float, msgspec.Meta(ge=-60.0, le=90.0)] | None = None
    humidity_pct: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)] | None = None
    sensor_idx: Annotated[int, msgspec.Meta(ge=0, le=255)] = 0
    flags: tuple[Flag, ...] = ()
    clock_synced: bool = True


class CheckedUp(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: int
    device: str
    boot: str
    readings: tuple[CheckedReading, ...]


_decoder = msgspec.json.Decoder(CheckedUp)


def _reason(message: str) -> str:
    """msgspec says `Expected ... >= 0.0 - at $...` for a range, `Invalid enum value` etc."""
    if any(op in message for op in (">=", "<=", " > ", " < ", "length")):
        return "range"
    if "Invalid enum value" in message:
        return "unknown_flag"
    return "schema"


def decode_up(payload: bytes, topic_device: str, now_ms: int, max_payload_bytes: int,
              max_future_ms: int) -> CheckedUp:
    """Decode one `up` payload; raise WireError(reason, detail naming the JSON path)."""
    if len(payload) > max_payload_bytes:
        raise WireError("too_large", f"{len(payload)} bytes > {max_payload_bytes}")
    try:
        up = _decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise WireError(_reason(str(exc)), str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise WireError("not_json", str(exc)) from exc
    if up.v != SCHEMA_VERSION:
        raise WireError("schema_version", f"$.v = {up.v}, this collector speaks v{SCHEMA_VERSION}")
    if up.device != topic_device:
        if not DEVICE_ID_RE.match(up.device):
            raise WireError("bad_device_id", f"$.device {up.device!r}")
        raise WireError(
            "device_mismatch", f"payload device {up.device!r} != topic device {topic_device!r}"
        )
    if up.readings:
        newest = max(r.ts for r in up.readings)
        if newest > now_ms + max_future_ms:
            i = next(i for i, r in enumerate(up.readings) if r.ts == newest)
            raise WireError(
                "future_ts", f"$.readings[{i}].ts = {newest} is {newest - now_ms} ms in the future"
            )
    return up
