"""Wire format v1: round trips and validation errors that name what and where."""

from __future__ import annotations

import pytest

from airgrid.wire import (
    FLAGS,
    Reading,
    Status,
    UpBatch,
    WireError,
    decode_reading,
    decode_status,
    decode_up,
    encode_reading,
    encode_status,
    encode_up,
    parse_device_topic,
    up_topic,
)

NOW = 1_790_000_000_000


def _batch(**reading: object) -> UpBatch:
    base: dict[str, object] = {"seq": 1, "ts": NOW, "sensor": "pms5003", "pm2_5": 12.5,
                               "pm10": 20.0, "n0_3": 1500}
    base.update(reading)
    return UpBatch(v=1, device="dev-1", boot="b1", readings=(Reading(**base),))  # type: ignore[arg-type]


def test_round_trip_keeps_every_field() -> None:
    batch = _batch(temperature_c=21.5, humidity_pct=55.0, flags=("warming_up",))
    assert decode_up(encode_up(batch), "dev-1") == batch


def test_field_names_on_the_wire() -> None:
    text = encode_up(_batch()).decode()
    for name in ('"pm2_5"', '"pm10"', '"n0_3"', '"seq"', '"ts"', '"sensor"'):
        assert name in text


@pytest.mark.parametrize(
    ("payload", "reason", "where"),
    [
        (b"not json", "not_json", ""),
        (b'{"v":1,"device":"dev-1","boot":"b","readings":[{"seq":"x","ts":1,"sensor":"p"}]}',
         "schema", "$.readings[0].seq"),
        (b'{"v":2,"device":"dev-1","boot":"b","readings":[]}', "schema_version", "$.v = 2"),
        (b'{"v":1,"device":"dev-1","boot":"b","readings":[], "extra": 1}', "schema", "extra"),
    ],
)
def test_decode_errors_name_the_place(payload: bytes, reason: str, where: str) -> None:
    with pytest.raises(WireError) as err:
        decode_up(payload, "dev-1")
    assert err.value.reason == reason
    assert where in str(err.value)


@pytest.mark.parametrize(
    ("reading", "reason", "where"),
    [
        ({"pm2_5": -1.0}, "range", "$.readings[0].pm2_5"),
        ({"pm10": 65535.5}, "range", "$.readings[0].pm10"),
        ({"humidity_pct": 120.0}, "range", "humidity_pct"),
        ({"seq": 0}, "range", ".seq"),
        ({"ts": 0}, "ts_too_old", "$.readings[0].ts"),
        ({"seq": 2**63}, "range", "$.readings[0].seq"),
        ({"n0_3": 1_000_001}, "range", "$.readings[0].n0_3"),
        ({"temperature_c": -61.0}, "range", "$.readings[0].temperature_c"),
        ({"sensor_idx": 1000}, "range", "$.readings[0].sensor_idx"),
        ({"sensor": "p" * 100}, "range", "$.readings[0].sensor"),
        ({"sensor": ""}, "range", "$.readings[0].sensor"),
        ({"flags": ("sparkly",)}, "unknown_flag", "sparkly"),
    ],
)
def test_validation_rejects_with_reason(
    reading: dict[str, object], reason: str, where: str
) -> None:
    with pytest.raises(WireError) as err:
        decode_up(encode_up(_batch(**reading)), "dev-1")
    assert err.value.reason == reason
    assert where in str(err.value)


def test_the_place_names_the_reading_in_its_batch() -> None:
    readings = tuple(Reading(seq=i + 1, ts=NOW, sensor="pms5003") for i in range(3))
    bad = encode_up(UpBatch(v=1, device="dev-1", boot="b1",
                            readings=(*readings, Reading(seq=-4, ts=NOW, sensor="pms5003"))))
    with pytest.raises(WireError) as err:
        decode_up(bad)
    assert (err.value.reason, err.value.detail) == (
        "range", "Expected `int` >= 1 - at `$.readings[3].seq`")


@pytest.mark.parametrize("payload", [
    b'{"v":1,"device":"dev-1","boot":"b","readings":[{"seq":1,"ts":1700000000000,"sensor":"p","a>=b":1}]}',
    b'{"v":1,"device":"dev-1","boot":"b","readings":[{"seq":1,"ts":1700000000000,"sensor":"p","flags":[1]}]}',
    b'{"v":1,"device":"dev-1","boot":"b","readings":[{"seq":1,"ts":1700000000000,"sensor":3}]}',
])
def test_wrong_types_and_unknown_fields_are_schema_errors(payload: bytes) -> None:
    with pytest.raises(WireError) as err:
        decode_up(payload)
    assert err.value.reason == "schema"


def test_device_id_must_be_topic_safe() -> None:
    bad = encode_up(UpBatch(v=1, device="a b", boot="b1", readings=()))
    with pytest.raises(WireError) as err:
        decode_up(bad)
    assert (err.value.reason, err.value.detail) == ("bad_device_id", "$.device 'a b'")


def test_limits_hold_at_their_edges() -> None:
    edge = _batch(pm2_5=0.0, pm10=65535.0, n0_3=65535, temperature_c=-60.0,
                  humidity_pct=110.0, sensor_idx=255, sensor="p" * 64,
                  flags=tuple(sorted(FLAGS)))
    assert decode_up(encode_up(edge)) == edge


def test_the_outbox_reads_back_what_it_stored_beyond_the_limits() -> None:
    """A raw sensor value past the limits is the receiver's to refuse, not the agent's
    reason to fail reading its own outbox."""
    r = Reading(seq=1, ts=NOW, sensor="pms5003", pm10_cf1=2100.0, flags=("out_of_range",))
    assert decode_reading(encode_reading(r)) == r


def test_topic_device_must_match_payload() -> None:
    with pytest.raises(WireError) as err:
        decode_up(encode_up(_batch()), "dev-2")
    assert err.value.reason == "device_mismatch"


def test_topics() -> None:
    assert up_topic("dev-1") == "airgrid/v1/dev/dev-1/up"
    assert parse_device_topic("airgrid/v1/dev/dev-1/status") == ("dev-1", "status")
    assert parse_device_topic("county/v1/dev/x/up", "county") == ("x", "up")
    for bad in ("airgrid/v1/dev/up", "other/v1/dev/a/up", "airgrid/v1/dev/a b/up"):
        with pytest.raises(WireError):
            parse_device_topic(bad)


def test_status_round_trip_and_mismatch() -> None:
    s = Status(v=1, device="dev-1", state="online", outbox_depth=3, sensor_errors={"checksum": 2})
    assert decode_status(encode_status(s), "dev-1") == s
    with pytest.raises(WireError):
        decode_status(encode_status(s), "dev-9")
