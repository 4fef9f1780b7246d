"""Every string that reaches line protocol, from the whole of Unicode, against the real
InfluxDB: each point is read back as written (after `safe_text`, the documented mapping
of what line protocol cannot carry), in its own measurement, and nothing else appears.

The strings: the device id (within its pattern), the sensor name (a device's), the
registry's site/township/grid tags (encoded even if the registry loader would refuse
them), and the status's agent_version string field. Also: the spool keeps lines holding
any Unicode line separator whole.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airgrid.measurements import DEVICE_STATUS, READINGS
from airgrid.wire import DEVICE_ID_RE, Status
from collector.influx_sink import InfluxV1Sink
from collector.line_protocol import fields_of, safe_text, status_line
from collector.registry import Device, RegistryWatcher
from collector.spool import Spool
from collector.tag_cache import TagCache
from orchestration.services import InfluxDB
from tests.support.collector_process import reading

# Every code point, control characters, separators and lone surrogates included.
ANY_TEXT = st.text(st.characters(blacklist_categories=()), min_size=1, max_size=24)
DEVICE_IDS = st.from_regex(DEVICE_ID_RE, fullmatch=True).map(lambda s: s[:40])
TS = 1_790_000_000_000


def _rows(influx: InfluxDB, db: str, q: str) -> list[dict[str, object]]:
    res = influx.query(q, db=db)
    out: list[dict[str, object]] = []
    for s in res["results"][0].get("series") or []:  # type: ignore[index]
        out += [dict(zip(s["columns"], v, strict=True)) for v in s["values"]]
    return out


def test_every_string_reaches_influxdb_intact_and_forges_nothing(
        shared_influxdb: InfluxDB, influx_db_name: str) -> None:
    sink = InfluxV1Sink(shared_influxdb.url, influx_db_name)
    registry = RegistryWatcher(None)
    registry.path = Path("registry.yaml")  # tags come from it, as with a registry file
    tags = TagCache(registry)
    n = itertools.count()
    series: set[tuple[str, str]] = set()

    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(device=DEVICE_IDS, sensor=ANY_TEXT, site=ANY_TEXT, township=ANY_TEXT,
           grid=ANY_TEXT, version=st.text(st.characters(blacklist_categories=()),
                                          max_size=24),
           sensor_state=st.text(st.characters(blacklist_categories=()), max_size=24),
           uncaptured=st.integers(0, 2**53), clock_hold_s=st.floats(0, 1e6))
    def one(device: str, sensor: str, site: str, township: str, grid: str,
            version: str, sensor_state: str, uncaptured: int, clock_hold_s: float) -> None:
        device = f"{device}-{next(n)}"  # a device of its own per example
        registry.devices[device] = Device(
            id=device, name="", site=site, township=township, grid=grid, lat=0.0, lon=0.0,
            sensor="pms5003", calibration=None, contacts=())
        r = reading(1, TS, 12.5)
        lines = [f"{tags.reading(device, sensor, 0)} {fields_of(r)} {r.ts}",
                 status_line(tags.device(device), Status(
                     v=1, device=device, state="online", agent_version=version,
                     sensor_state=sensor_state, uncaptured=uncaptured,
                     clock_hold_s=clock_hold_s), TS)]
        sink.write(lines)
        series.update({(READINGS, device), (DEVICE_STATUS, device)})
        (point,) = _rows(shared_influxdb, influx_db_name,
                         f"SELECT * FROM {READINGS} WHERE device='{device}'")
        assert (point["sensor"], point["site"], point["township"], point["grid"]) == (
            safe_text(sensor), safe_text(site), safe_text(township), safe_text(grid))
        assert (point["pm2_5"], point["seq"]) == (12.5, 1)
        (status,) = _rows(shared_influxdb, influx_db_name,
                          f"SELECT * FROM {DEVICE_STATUS} WHERE device='{device}'")
        assert status["agent_version"] == safe_text(version, tag=False)
        # the agent's optional fields: kept as sent, absent (not zero) when not sent
        assert status.get("sensor_state") == (safe_text(sensor_state, tag=False)
                                              if sensor_state else None)
        assert status.get("uncaptured") == (uncaptured or None)
        assert status.get("clock_hold_s") == (clock_hold_s or None)
        names = {r["name"] for r in _rows(shared_influxdb, influx_db_name,
                                          "SHOW MEASUREMENTS")}
        assert names == {READINGS, DEVICE_STATUS}
        # one series per point written: nothing split off into another
        keys = _rows(shared_influxdb, influx_db_name, "SHOW SERIES")
        assert len(keys) == len(series)

    one()


def test_the_spool_keeps_lines_with_unicode_line_separators_whole() -> None:
    """Before: str.splitlines split a line at U+2028 (and CR, U+0085, …) on replay."""
    spool = Spool(Path(tempfile.mkdtemp()), 1 << 20)
    lines = ['readings,device=a,sensor=x\u2028y v="p\u2029q\rr\x85s\x1ct\x0bu\x0cw" 1',
             'readings,device=b v="\u2028" 2']
    spool.append(lines)
    assert spool.oldest() == lines
    assert spool.lines == 2
