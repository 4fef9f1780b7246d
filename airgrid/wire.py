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

#: Limits of what a sensor can send, not of what is plausible: a value inside them is
#: legal input (the agent flags what lies beyond the nominal range, e.g. `out_of_range`),
#: a value outside them is impossible and quarantined.
#: PM and counts: the Plantower frame carries each as an unsigned 16-bit word (PMS5003
#: datasheet V2.3, "Appendix I": data 1-12 are high byte + low byte), so 0..65535 is what
#: a PMS5003/PMSA003I can report, far beyond its nominal 0-500 µg/m³ effective range
#: (a raw pm10_cf1 of 2100 happens). The SDS011 sends 0.1 µg/m³ in 16 bits: 0..6553.5
#: (Nova SDS011 datasheet V1.3, "Communication protocol").
PM_MAX_UG_M3: Final = 65535.0
COUNT_MAX: Final = 65535
#: PMS5003T (datasheet V2.0: temperature -10..60 °C, ±1 °C; RH 0..99 %, ±5 % at 25 °C)
#: sends both as signed 16-bit tenths. The limits leave room for the tolerance (an RH of
#: 100.1 at saturation is legal, flagged `high_humidity` by the agent) and reject the
#: impossible: no air is drier than 0 % or wetter than the tolerance allows above 100 %.
TEMPERATURE_MIN_C: Final = -60.0
TEMPERATURE_MAX_C: Final = 90.0
HUMIDITY_MAX_PCT: Final = 110.0
#: `seq` is stored as SQLite INTEGER (signed 64-bit) by the agent and the collector.
SEQ_MAX: Final = 2**63 - 1
#: The oldest reading time accepted: 2020-01-01T00:00:00Z. A Pi has no real-time clock:
#: before NTP its clock starts at 1970 (or the last saved time), and a reading stamped
#: then is not a 1970 measurement. No airgrid device existed before 2020.
TS_MIN_MS: Final = 1_577_836_800_000
#: An outbox epoch: a short random id (the agent makes 16 hex digits); "" for payloads
#: from agents that predate it.
EPOCH_RE: Final = r"^[A-Za-z0-9_-]{0,32}$"
#: Length of a sensor model name and the highest sensor index on one device.
SENSOR_NAME_MAX: Final = 64
SENSOR_IDX_MAX: Final = 255
#: A receiver's default for readings stamped in the future (clock far off); the
#: collector checks it against its own clock, with its configured value.
MAX_FUTURE_MS: Final = 10 * 60 * 1000

Pm = Annotated[float, msgspec.Meta(ge=0.0, le=PM_MAX_UG_M3)]
Count = Annotated[int, msgspec.Meta(ge=0, le=COUNT_MAX)]
TemperatureC = Annotated[float, msgspec.Meta(ge=TEMPERATURE_MIN_C, le=TEMPERATURE_MAX_C)]
HumidityPct = Annotated[float, msgspec.Meta(ge=0.0, le=HUMIDITY_MAX_PCT)]  # relative humidity


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

    seq: Annotated[int, msgspec.Meta(ge=1, le=SEQ_MAX)]
    ts: Annotated[int, msgspec.Meta(ge=TS_MIN_MS)]  # UTC epoch milliseconds
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
    """Payload of `{prefix}/v1/dev/{device}/up`.

    `epoch` names the outbox the readings' seqs come from (a re-flashed card starts a new
    one); repeats are (device, epoch, seq). Field order is the encoding order, which the
    agent's publisher writes by hand.
    """

    v: int
    device: str
    boot: str
    readings: tuple[Reading, ...]
    epoch: Annotated[str, msgspec.Meta(pattern=EPOCH_RE)] = ""


class _UpEnvelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An `up` payload with its readings left undecoded: each is judged on its own."""

    v: int
    device: str
    boot: str
    readings: tuple[msgspec.Raw, ...]
    epoch: Annotated[str, msgspec.Meta(pattern=EPOCH_RE)] = ""


class BadReading(msgspec.Struct, frozen=True):
    """A reading of an `up` payload that failed validation, with why and its JSON."""

    index: int
    reason: str
    detail: str
    raw: bytes


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
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # msgspec raises UnicodeDecodeError for invalid UTF-8 inside a JSON string
        raise WireError("not_json", str(exc)) from exc
    if topic_device is not None and status.device != topic_device:
        raise WireError(
            "device_mismatch", f"payload device {status.device!r} != topic device {topic_device!r}"
        )
    return status


def _reason(message: str, path: str) -> str:
    """Reason name for a msgspec validation message (`Expected `int` >= 1 - at `$...``)."""
    if _LIMIT_RE.match(message):
        if path.endswith(".ts`") and ">=" in message:
            return "ts_too_old"
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
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # msgspec raises UnicodeDecodeError for invalid UTF-8 inside a JSON string
        raise WireError("not_json", str(exc)) from exc
    _check_up(batch, topic_device)
    return batch


_envelope_decoder = msgspec.json.Decoder(_UpEnvelope)


def decode_up_readings(payload: bytes, topic_device: str | None = None
                       ) -> tuple[UpBatch, list[BadReading]]:
    """Decode an `up` payload judging each reading on its own: the batch of the valid
    readings, and the invalid ones with their reason and JSON.

    The envelope (version, device, boot, epoch, readings being a list) must be valid as a
    whole, else WireError. A payload whose readings are all valid costs one msgspec pass,
    as `decode_up`; only a payload with a bad reading is decoded again, reading by reading.
    """
    try:
        batch = _up_decoder.decode(payload)
    except msgspec.ValidationError:
        pass
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # msgspec raises UnicodeDecodeError for invalid UTF-8 inside a JSON string
        raise WireError("not_json", str(exc)) from exc
    else:
        _check_up(batch, topic_device)
        return batch, []
    try:
        env = _envelope_decoder.decode(payload)
    except RecursionError as exc:  # skipping a reading nested thousands of levels deep
        raise WireError("too_deep", f"JSON nested too deeply: {exc}") from exc
    except msgspec.ValidationError as exc:
        message = str(exc)
        raise WireError(_reason(message, message.rpartition(" - at ")[2]), message) from exc
    good: list[Reading] = []
    bad: list[BadReading] = []
    for i, raw in enumerate(env.readings):
        try:
            good.append(_reading_decoder.decode(raw))
        except msgspec.ValidationError as exc:
            message = str(exc)
            if " - at `$" in message:
                message = message.replace(" - at `$", f" - at `$.readings[{i}]", 1)
            else:
                message += f" - at `$.readings[{i}]`"
            bad.append(BadReading(i, _reason(message, message.rpartition(" - at ")[2]),
                                  message, bytes(raw)))
    batch = UpBatch(v=env.v, device=env.device, boot=env.boot, readings=tuple(good),
                    epoch=env.epoch)
    _check_up(batch, topic_device)
    return batch, bad


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
