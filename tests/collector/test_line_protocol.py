"""The collector's line-protocol encoder as InfluxDB parses it: field types and order,
escaping (InfluxDB 1.x line-protocol reference, "Special characters"), and a round trip
through a real InfluxDB 1.x."""

from __future__ import annotations

import pytest

from airgrid.wire import Reading, Status
from collector.influx_sink import InfluxV1Sink
from collector.line_protocol import (
    DEVICE_STATUS,
    READINGS,
    escape_string_field,
    escape_tag,
    fields_of,
    status_line,
    tag_set,
)
from orchestration.services import InfluxDB
from tests.support.collector_process import stored_rows

PLANTOWER = Reading(seq=7, ts=1_700_000_000_123, sensor="pms5003", pm1_0=8.0, pm2_5=12.0,
                    pm10=20.5, pm1_0_cf1=8.5, pm2_5_cf1=12.5, pm10_cf1=21.0, n0_3=1500,
                    n0_5=420, n1_0=90, n2_5=12, n5_0=3, n10=1)


def test_a_full_plantower_reading_has_every_field_typed_in_wire_order() -> None:
    assert fields_of(PLANTOWER) == (
        "pm1_0=8.0,pm2_5=12.0,pm10=20.5,pm1_0_cf1=8.5,pm2_5_cf1=12.5,pm10_cf1=21.0,"
        "n0_3=1500i,n0_5=420i,n1_0=90i,n2_5=12i,n5_0=3i,n10=1i,"
        'seq=7i,flags="",clock_synced=true')


def test_a_partial_reading_writes_only_the_fields_it_has() -> None:
    r = Reading(seq=3, ts=1, sensor="pms5003t", pm2_5=33.25, n0_3=1200, temperature_c=-2.5,
                humidity_pct=81.0, flags=("warming_up", "stuck"), clock_synced=False)
    assert fields_of(r, ",pm2_5_corr=30.1") == (
        "pm2_5=33.25,n0_3=1200i,temperature_c=-2.5,humidity_pct=81.0,pm2_5_corr=30.1,"
        'seq=3i,flags="warming_up,stuck",clock_synced=false')


def test_a_reading_with_no_measured_value_still_makes_a_field_set() -> None:
    assert fields_of(Reading(seq=1, ts=1, sensor="x")) == 'seq=1i,flags="",clock_synced=true'


@pytest.mark.parametrize(("raw", "escaped"), [
    ("a b", r"a\ b"),
    ("a,b", r"a\,b"),
    ("a=b", r"a\=b"),
    ("a b,c=d", r"a\ b\,c\=d"),
    ('say "hi"', r'say\ "hi"'),  # quotes are literal in tags
    ("城关镇", "城关镇"),
])
def test_tag_keys_values_and_field_keys_escape_comma_equals_and_space(raw: str,
                                                                      escaped: str) -> None:
    assert escape_tag(raw) == escaped


@pytest.mark.parametrize(("raw", "quoted"), [
    ("plain", '"plain"'),
    ('v1.2 "beta"', r'"v1.2 \"beta\""'),
    ("C:\\agent", r'"C:\\agent"'),
    ("a,b=c d", '"a,b=c d"'),  # commas, equals and spaces are literal in a string field
    ("", '""'),
])
def test_string_field_values_escape_quotes_and_backslashes(raw: str, quoted: str) -> None:
    assert escape_string_field(raw) == quoted


def test_tag_set_is_sorted_escaped_in_keys_and_values_and_skips_empty_values() -> None:
    assert tag_set({"township": "城关 镇", "device": "d1", "grid": ""}) == (
        r",device=d1,township=城关\ 镇")
    assert tag_set({"site name": "a=b", "b,key": "x"}) == r",b\,key=x,site\ name=a\=b"


def test_measurement_names_need_no_escaping() -> None:
    for name in (READINGS, DEVICE_STATUS):
        assert name == escape_tag(name) and name.isidentifier()


def test_status_line_types_and_escaping() -> None:
    s = Status(v=1, device="d1", state="online", outbox_depth=4, dropped=3, uptime_s=12.5,
               agent_version='1.0 "rc\\1"', sensor_errors={"checksum": 2, "bad key": 9})
    assert status_line(",device=d1", s, 5) == (
        "device_status,device=d1 online=true,outbox_depth=4i,dropped=3i,uptime_s=12.5,"
        r'clock_synced=true,agent_version="1.0 \"rc\\1\"",err_checksum=2i 5')


def test_offline_status_writes_only_the_state() -> None:
    offline = status_line(",device=d1", Status(v=1, device="d1", state="offline"), 6)
    assert offline == "device_status,device=d1 online=false 6"


def test_escaped_points_read_back_identical_from_influxdb(
        shared_influxdb: InfluxDB, influx_db_name: str) -> None:
    """Tags and string fields with every character the spec escapes, through the real
    /write and back through a query."""
    odd = 'a b,c=d"e'
    device_tags = tag_set({"device": "d1", "site": odd, "town ship": "城关 镇"})
    reading = Reading(seq=1, ts=1_700_000_000_000, sensor="pms 5003,x=y", pm2_5=12.5,
                      flags=("stuck", "warming_up"))
    reading_line = (f"{READINGS}{device_tags},sensor={escape_tag(reading.sensor)}"
                    f" {fields_of(reading)} {reading.ts}")
    status = Status(v=1, device="d1", state="online", agent_version='v "1", C:\\x y=z')
    InfluxV1Sink(shared_influxdb.url, influx_db_name).write(
        [reading_line, status_line(device_tags, status, 1_700_000_000_500)])

    (row,) = stored_rows(shared_influxdb, influx_db_name, READINGS)
    assert (row["site"], row["town ship"], row["sensor"]) == (odd, "城关 镇", "pms 5003,x=y")
    assert (row["pm2_5"], row["seq"], row["flags"]) == (12.5, 1, "stuck,warming_up")
    (srow,) = stored_rows(shared_influxdb, influx_db_name, DEVICE_STATUS)
    assert srow["agent_version"] == 'v "1", C:\\x y=z' and srow["site"] == odd
