"""Line protocol as InfluxDB parses it: escaping, field types, timestamps."""

from __future__ import annotations

from airgrid.wire import Reading
from collector.line_protocol import escape_tag, reading_line, tag_set


def test_reading_line_types_and_order() -> None:
    r = Reading(seq=7, ts=1_700_000_000_123, sensor="pms5003", pm2_5=12.0, pm10=20.5,
                n0_3=1500, flags=("warming_up", "stuck"))
    line = reading_line(tag_set({"device": "d1"}), r)
    assert line == ('readings,device=d1,sensor=pms5003 pm2_5=12.0,pm10=20.5,n0_3=1500i,seq=7i,'
                    'flags="warming_up,stuck",clock_synced=true 1700000000123')


def test_tags_are_escaped_and_sorted() -> None:
    assert escape_tag("a b,c=d") == r"a\ b\,c\=d"
    assert tag_set({"township": "城关 镇", "device": "d1", "grid": ""}) == (
        r",device=d1,township=城关\ 镇")


def test_offline_status_writes_only_the_state() -> None:
    from airgrid.wire import Status
    from collector.line_protocol import status_line

    online = status_line(",device=d1", Status(v=1, device="d1", state="online", dropped=3), 5)
    assert "dropped=3i" in online and "online=true" in online
    offline = status_line(",device=d1", Status(v=1, device="d1", state="offline"), 6)
    assert offline == "device_status,device=d1 online=false 6"
