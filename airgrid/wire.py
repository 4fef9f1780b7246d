"""Wire format v1: topics and payloads between the edge agent and the collector.

Field names here are the names used on the wire, in InfluxDB fields and in CLI output.
The agent encodes with these structs and encoder; the collector decodes with them. The
structs carry the range limits, so decoding an `up` payload is its validation (one msgspec
pass, ranges checked in C): `decode_up` is the one validator of the format.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal, get_args

import msgspec

from airgrid.errors import AirgridError

SCHEMA_VERSION: Final = 1
DEFAULT_PREFIX: Final = "airgrid"
#: A receiver's default size cap for one payload (the collector's is configurable).
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
Flag = Literal[
    "warming_up", "stuck", "out_of_range", "inconsistent", "high_humidity", "clock_unsynced"
]
FLAGS: Final = frozenset(get_args(Flag))

#: Physical plausibility limits. PM: the sensors' maximum ranges are 0-1000 µg/m³
#: (Plantower PMS5003 datasheet V2.3: maximum range >= 1000; Nova SDS011 datasheet V1.3:
#: 0.0-999.9); headroom is left because CF=1 values can exceed the nominal range.
PM_MAX_UG_M3: Final = 2000.0
COUNT_MAX: Final = 1_000_000
TEMPERATURE_MIN_C: Final = -60.0
TEMPERATURE_MAX_C: Final = 90.0
#: Length of a sensor model name and the highest sensor index on one device.
SENSOR_NAME_MAX: Final = 64
SENSOR_IDX_MAX: Final = 255
#: A receiver's default for readings stamped in the future (clock far off); the
#: collector checks it against its own clock, with its configured value.
MAX_FUTURE_MS: Final = 10 * 60 * 1000

Pm = Annotated[float, msgspec.Meta(ge=0.0, le=PM_MAX_UG_M3)]
Count = Annotated[int, msgspec.Meta(ge=0, le=COUNT_MAX)]
TemperatureC = Annotated[float, msgspec.Meta(ge=TEMPERATURE_MIN_C, le=TEMPERATURE_MAX_C)]
HumidityPct = Annotated[float, msgspec.Meta(ge=0.0, le=100.0)]  # relative humidity


class WireError(AirgridError, ValueError):
    """A payload or topic that does not follow wire format v1. Drop it (dead letter)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Reading(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """One sampled reading. Mass values in µg/m³, counts per 0.1 L.

    The limits are checked when a payload is decoded, not when a Reading is built.
    """

    seq: Annotated[int, msgspec.Meta(ge=1)]
    ts: Annotated[int, msgspec.Meta(gt=0)]  # UTC epoch milliseconds
    sensor: Annotated[str, msgspec.Meta(min_length=1, max_length=SENSOR_NAME_MAX)]  # "pms5003"
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
    temperature_c: TemperatureC | None = None
    humidity_pct: HumidityPct | None = None
    sensor_idx: Annotated[int, msgspec.Meta(ge=0, le=SENSOR_IDX_MAX)] = 0
    flags: tuple[Flag, ...] = ()
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
    # Readings the agent took but could not commit (disk full), since the outbox began.
    uncaptured: int = 0
    # Seconds readings will still be held for an NTP sync; 0 = not holding.
    clock_hold_s: float = 0.0


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
    """A reading the agent encoded itself, read back from its outbox.

    Not judged against the limits: a raw sensor value beyond them is the sampler's to
    flag and the receiver's to refuse, and must not stop the agent reading its outbox.
    """
    try:
        return _reading_decoder.decode(data)
    except msgspec.ValidationError:
        raw = msgspec.json.decode(data)
        return Reading(**{**raw, "flags": tuple(raw.get("flags", ()))})


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


def _reason(message: str, path: str) -> str:
    """Reason name for a msgspec validation message (`Expected `int` >= 1 - at `$...``)."""
    if _LIMIT_RE.match(message):
        return "range"
    if message.startswith("Invalid enum value") and ".flags[" in path:
        return "unknown_flag"
    return "schema"


# A violated Meta limit, as against a wrong type ("Expected `int`, got `str`").
_LIMIT_RE: Final = re.compile(r"Expected `[^`]*` (?:>=|<=|>|<|of length)")


def decode_up(payload: bytes, topic_device: str | None = None) -> UpBatch:
    """Decode and validate an `up` payload; raise WireError(reason, detail naming the JSON
    path), e.g. ("range", "Expected `int` >= 1 - at `$.readings[3].seq`").

    Everything the payload alone decides is checked here; with `topic_device`, also that
    the payload names the device its topic names. The size cap and the clock limit are
    the receiver's, against its own config and clock.
    """
    try:
        batch = _up_decoder.decode(payload)
    except msgspec.ValidationError as exc:
        message = str(exc)
        raise WireError(_reason(message, message.rpartition(" - at ")[2]), message) from exc
    except msgspec.DecodeError as exc:
        raise WireError("not_json", str(exc)) from exc
    _check_up(batch, topic_device)
    return batch


def _check_up(batch: UpBatch, topic_device: str | None = None) -> None:
    """The rules a field's own limits cannot say: schema version, device id, topic device."""
    if batch.v != SCHEMA_VERSION:
        raise WireError("schema_version", f"$.v = {batch.v}, this collector speaks "
                                          f"v{SCHEMA_VERSION}")
    if not DEVICE_ID_RE.match(batch.device):
        raise WireError("bad_device_id", f"$.device {batch.device!r}")
    if topic_device is not None and batch.device != topic_device:
        raise WireError(
            "device_mismatch", f"payload device {batch.device!r} != topic device {topic_device!r}"
        )
