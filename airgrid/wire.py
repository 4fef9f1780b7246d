"""Wire format v1: topics and payloads shared by the edge agent and the collector.

Both sides import it from the core (`airgrid`). Field names here are the names used on
the wire, in InfluxDB fields and in CLI output.
"""

from __future__ import annotations

import re
from typing import Final, Literal

import msgspec

from airgrid.errors import AirgridError

SCHEMA_VERSION: Final = 1
DEFAULT_PREFIX: Final = "airgrid"
MAX_PAYLOAD_BYTES: Final = 256 * 1024

# A device id must be safe inside a topic level, a SQLite file name and an InfluxDB tag.
DEVICE_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

#: Reading fields holding PM mass concentrations in µg/m³ (atmospheric, then CF=1).
PM_FIELDS: Final = ("pm1_0", "pm2_5", "pm10", "pm1_0_cf1", "pm2_5_cf1", "pm10_cf1")
#: Particle counts per 0.1 L of air, as the Plantower frame gives them.
COUNT_FIELDS: Final = ("n0_3", "n0_5", "n1_0", "n2_5", "n5_0", "n10")
#: Environment fields, present only on sensors that measure them.
ENV_FIELDS: Final = ("temperature_c", "humidity_pct")

#: Quality flags a reading may carry.
FLAGS: Final = frozenset(
    {"warming_up", "stuck", "out_of_range", "inconsistent", "high_humidity", "clock_unsynced"}
)

#: Physical plausibility limits used by validation (the sensors' ranges are 0-1000 µg/m³;
#: a little headroom is left because CF=1 values can exceed the nominal range).
PM_MAX_UG_M3: Final = 2000.0
COUNT_MAX: Final = 1_000_000
#: A reading stamped further than this in the future is rejected (clock far off).
MAX_FUTURE_MS: Final = 10 * 60 * 1000


class WireError(AirgridError, ValueError):
    """A payload or topic that does not follow wire format v1. Drop it (dead letter)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Reading(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """One sampled reading. Mass values in µg/m³, counts per 0.1 L."""

    seq: int
    ts: int  # UTC epoch milliseconds
    sensor: str  # sensor model, e.g. "pms5003"
    pm1_0: float | None = None
    pm2_5: float | None = None
    pm10: float | None = None
    pm1_0_cf1: float | None = None
    pm2_5_cf1: float | None = None
    pm10_cf1: float | None = None
    n0_3: int | None = None
    n0_5: int | None = None
    n1_0: int | None = None
    n2_5: int | None = None
    n5_0: int | None = None
    n10: int | None = None
    temperature_c: float | None = None
    humidity_pct: float | None = None
    sensor_idx: int = 0
    flags: tuple[str, ...] = ()
    clock_synced: bool = True


class UpBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Payload of `{prefix}/v1/dev/{device}/up`."""

    v: int
    device: str
    boot: str
    readings: tuple[Reading, ...]


class Status(msgspec.Struct, frozen=True, omit_defaults=True):
    """Payload of the retained `{prefix}/v1/dev/{device}/status` topic."""

    v: int
    device: str
    state: Literal["online", "offline"]
    agent_version: str = ""
    outbox_depth: int = 0
    dropped: int = 0
    uptime_s: float = 0.0
    clock_synced: bool = True
    sensor_errors: dict[str, int] = {}
    # Added by the field-grade agent; optional, so older payloads still decode.
    sensor_state: str = ""  # starting, ok, silent, failed, asleep, no_port
    sensor_run_hours: float = 0.0  # fan and laser on-time: they wear out, plan replacement
    outbox_bytes: int = 0
    corrupt_resets: int = 0


# --- topics ---------------------------------------------------------------------------


def up_topic(device: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/v1/dev/{device}/up"


def status_topic(device: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/v1/dev/{device}/status"


def alert_topic(rule: str, subject: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/v1/alerts/{rule}/{subject}"


def deadletter_topic(prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/v1/deadletter"


def device_subscription(kind: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Wildcard subscription for every device's `kind` topic (`up` or `status`)."""
    return f"{prefix}/v1/dev/+/{kind}"


def parse_device_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """Split `{prefix}/v1/dev/{device}/{kind}` into (device, kind)."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != prefix or parts[1] != "v1" or parts[2] != "dev":
        raise WireError("bad_topic", f"topic {topic!r} is not {prefix}/v1/dev/<device>/<kind>")
    device, kind = parts[3], parts[4]
    if not DEVICE_ID_RE.match(device):
        raise WireError("bad_device_id", f"device id {device!r} in topic {topic!r}")
    return device, kind


# --- encode / decode -----------------------------------------------------------------

_encoder = msgspec.json.Encoder()
_up_decoder = msgspec.json.Decoder(UpBatch)
_status_decoder = msgspec.json.Decoder(Status)


def encode_up(batch: UpBatch) -> bytes:
    return _encoder.encode(batch)


def encode_reading(reading: Reading) -> bytes:
    return _encoder.encode(reading)


_reading_decoder = msgspec.json.Decoder(Reading)


def decode_reading(data: bytes) -> Reading:
    return _reading_decoder.decode(data)


def encode_status(status: Status) -> bytes:
    return _encoder.encode(status)


def decode_status(payload: bytes, topic_device: str | None = None) -> Status:
    try:
        status = _status_decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise WireError("schema", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise WireError("not_json", str(exc)) from exc
    if topic_device is not None and status.device != topic_device:
        raise WireError(
            "device_mismatch", f"payload device {status.device!r} != topic device {topic_device!r}"
        )
    return status


def decode_up(
    payload: bytes, topic_device: str | None = None, now_ms: int | None = None
) -> UpBatch:
    """Decode and validate an `up` payload; raise WireError naming what and where."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        batch = _up_decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise WireError("schema", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise WireError("not_json", str(exc)) from exc
    validate_up(batch, topic_device, now_ms)
    return batch


def validate_up(batch: UpBatch, topic_device: str | None = None, now_ms: int | None = None) -> None:
    if batch.v != SCHEMA_VERSION:
        raise WireError("schema_version", f"v={batch.v}, this collector speaks v{SCHEMA_VERSION}")
    if not DEVICE_ID_RE.match(batch.device):
        raise WireError("bad_device_id", f"$.device {batch.device!r}")
    if topic_device is not None and batch.device != topic_device:
        raise WireError(
            "device_mismatch", f"payload device {batch.device!r} != topic device {topic_device!r}"
        )
    for i, r in enumerate(batch.readings):
        where = f"$.readings[{i}]"
        if r.seq < 1:
            raise WireError("range", f"{where}.seq = {r.seq}, expected >= 1")
        if r.ts <= 0:
            raise WireError("range", f"{where}.ts = {r.ts}, expected epoch ms > 0")
        if now_ms is not None and r.ts > now_ms + MAX_FUTURE_MS:
            raise WireError("future_ts", f"{where}.ts = {r.ts} is {r.ts - now_ms} ms in the future")
        for name in PM_FIELDS:
            value = getattr(r, name)
            if value is not None and not (0.0 <= value <= PM_MAX_UG_M3):
                raise WireError("range", f"{where}.{name} = {value}, expected 0..{PM_MAX_UG_M3}")
        for name in COUNT_FIELDS:
            value = getattr(r, name)
            if value is not None and not (0 <= value <= COUNT_MAX):
                raise WireError("range", f"{where}.{name} = {value}, expected 0..{COUNT_MAX}")
        if r.humidity_pct is not None and not (0.0 <= r.humidity_pct <= 100.0):
            raise WireError("range", f"{where}.humidity_pct = {r.humidity_pct}, expected 0..100")
        if r.temperature_c is not None and not (-60.0 <= r.temperature_c <= 90.0):
            raise WireError("range", f"{where}.temperature_c = {r.temperature_c}, expected -60..90")
        unknown = set(r.flags) - FLAGS
        if unknown:
            raise WireError("unknown_flag", f"{where}.flags has {sorted(unknown)}")
