"""The collector's line-protocol encoder as InfluxDB parses it: field types and order,
escaping (InfluxDB 1.x line-protocol reference, "Special characters"), and a round trip
through a real InfluxDB 1.x."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from airgrid.wire import (
    COUNT_MAX,
    HUMIDITY_MAX_PCT,
    PM_MAX_UG_M3,
    TEMPERATURE_MAX_C,
    TEMPERATURE_MIN_C,
    TS_MIN_MS,
    Flag,
    Reading,
    Status,
)
from collector.influx_sink import InfluxV1Sink
from collector.line_protocol import (
    _FLOAT_TEXT,
    DEVICE_STATUS,
    NUMBER_TEXTS_MAX,
    READINGS,
    escape_string_field,
    escape_tag,
    fields_of,
    reading_lines,
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


def test_the_field_grade_agents_status_fields_are_kept_and_absent_ones_left_out() -> None:
    """Readings the agent could not capture (disk full), outbox resets and the sensor's
    state reach InfluxDB, so Grafana has their history, not only the retained message."""
    s = Status(v=1, device="d1", state="online", sensor_state="silent",
               sensor_run_hours=812.25, outbox_bytes=65536, corrupt_resets=1,
               uncaptured=17, clock_hold_s=42.5)
    line = status_line(",device=d1", s, 5)
    assert line == (
        "device_status,device=d1 online=true,outbox_depth=0i,dropped=0i,uptime_s=0.0,"
        'clock_synced=true,agent_version="",sensor_state="silent",sensor_run_hours=812.25,'
        "outbox_bytes=65536i,corrupt_resets=1i,uncaptured=17i,clock_hold_s=42.5 5")
    plain = status_line(",device=d1", Status(v=1, device="d1", state="online"), 5)
    assert not any(k in plain for k in ("sensor_state", "uncaptured", "clock_hold_s"))


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


# --- a message's lines at once (`reading_lines`): the same text as `fields_of` ---------

_PM = st.one_of(st.none(), st.just(-0.0), st.integers(0, 50).map(float),
                st.floats(0.0, PM_MAX_UG_M3))
_COUNT = st.one_of(st.none(), st.integers(0, 50), st.integers(0, COUNT_MAX))
_READINGS = st.builds(
    Reading, seq=st.integers(1, 10**9), ts=st.integers(TS_MIN_MS, 2 * TS_MIN_MS),
    sensor=st.just("pms5003"), pm1_0=_PM, pm2_5=_PM, pm10=_PM, pm1_0_cf1=_PM,
    pm2_5_cf1=_PM, pm10_cf1=_PM, n0_3=_COUNT, n0_5=_COUNT, n1_0=_COUNT, n2_5=_COUNT,
    n5_0=_COUNT, n10=_COUNT,
    temperature_c=st.none() | st.just(-0.0) | st.floats(TEMPERATURE_MIN_C, TEMPERATURE_MAX_C),
    humidity_pct=st.none() | st.floats(0.0, HUMIDITY_MAX_PCT),
    flags=st.lists(st.sampled_from(get_args(Flag)), max_size=3).map(tuple),
    clock_synced=st.booleans())


@given(batches=st.lists(st.lists(_READINGS, max_size=8), max_size=6))
def test_a_message_encoded_at_once_is_the_same_text_reading_by_reading(
        batches: list[list[Reading]]) -> None:
    # several messages in turn: a number remembered from one is written the same in the
    # next (30 and 30.0, 0.0 and -0.0 are equal keys with different texts)
    for readings in batches:
        assert reading_lines("readings,device=d,sensor=pms5003", readings) == [
            f"readings,device=d,sensor=pms5003 {fields_of(r)} {r.ts}" for r in readings]


def test_a_float_and_an_int_of_one_value_keep_their_own_text() -> None:
    r = Reading(seq=1, ts=TS_MIN_MS, sensor="s", pm1_0=30.0, pm2_5=-0.0, pm10=0.0,
                pm1_0_cf1=30.0, pm2_5_cf1=30.0, pm10_cf1=30.0, n0_3=30, n0_5=30, n1_0=30,
                n2_5=30, n5_0=0, n10=0)
    for _ in range(2):  # the second time from the remembered texts
        (line,) = reading_lines("m", [r])
        assert "pm1_0=30.0,pm2_5=-0.0,pm10=0.0," in line and ",n0_3=30i," in line


def test_remembered_number_texts_stay_bounded() -> None:
    r = PLANTOWER
    for i in range(NUMBER_TEXTS_MAX + 100):
        reading_lines("m", [msgspec.structs.replace(r, pm1_0=i + 0.5)])
    assert len(_FLOAT_TEXT) <= NUMBER_TEXTS_MAX
