"""Device registry: YAML and CSV, precise errors, reload on change, tags and calibration."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import collector
from alert_rules.engine import Engine
from collector import calibration
from collector.app import build_engine, build_pipeline
from collector.batch_builder import Intake
from collector.config import from_dict
from collector.county_points import CountyPoints
from collector.delivery import Delivery
from collector.influx_sink import InfluxV1Sink
from collector.mqtt_ingest import MqttIngest
from collector.registry import (
    LINKS,
    Contact,
    Device,
    RegistryError,
    RegistryParser,
    RegistryWatcher,
    load,
)
from collector.registry_feed import Handover, RegistryFeed
from collector.tag_cache import TagCache
from orchestration.services import InfluxDB, Mosquitto
from tests.support.collector_process import reading, stored_rows, up_payload
from tests.support.wait import wait_for

EXAMPLES = Path(collector.__file__).with_name("examples")


def test_example_registries_load() -> None:
    yml = load(EXAMPLES / "registry.yaml")
    assert yml["cg-001"].township == "城关镇" and yml["cg-001"].grid == "CG-01"
    assert yml["cg-001"].contacts[0].phone == "+8613800000001"
    assert yml["cg-002"].calibration is not None
    assert yml["cg-002"].calibration.formula == "linear"
    csv_ = load(EXAMPLES / "registry.csv")
    assert csv_["hx-001"].sensor == "sds011" and csv_["hx-001"].lat == pytest.approx(30.4021)
    assert csv_["hx-001"].contacts[0].name == "李娜"
    assert csv_["hx-002"].calibration is None and csv_["hx-002"].contacts == ()
    assert yml["cg-001"].technician == Contact("陈工", "+8613600000005")
    assert csv_["hx-001"].technician == Contact("陈工", "+8613600000005")
    assert csv_["hx-002"].technician is None
    assert csv_["hx-001"].link == "cellular" and csv_["hx-002"].link == "wired"
    assert yml["cg-002"].link == "cellular" and yml["cg-001"].link == "wifi"


def test_a_gbk_csv_from_excel_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """Excel in China saves CSV as GBK: refused (a wrong guess would garble townships),
    naming the file, the first bad line and how to save it as UTF-8."""
    text = (EXAMPLES / "registry.csv").read_text(encoding="utf-8")
    f = tmp_path / "registry.csv"
    f.write_bytes(text.encode("gbk"))
    first_bad = next(i for i, line in enumerate(text.splitlines(), 1) if not line.isascii())
    with pytest.raises(RegistryError) as err:
        load(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}: line {first_bad}: not UTF-8")
    assert "GBK" in msg and "CSV UTF-8" in msg
    f.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))  # Excel's "CSV UTF-8" has a BOM
    assert load(f)["hx-001"].contacts[0].name == "李娜"


@settings(max_examples=60, deadline=None)
@given(link=st.one_of(st.sampled_from(LINKS), st.integers(), st.text(
    st.characters(blacklist_characters='"\r\n', blacklist_categories=("Cs",)), max_size=12)))
def test_link_is_one_of_three_or_an_error_naming_entry_and_key(link: object) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "reg.csv"
        f.write_text(f"id,site,township,grid,lat,lon,link\na1,s,t,g,1,2,\"{link}\"\n",
                     encoding="utf-8")
        text = str(link).strip()
        try:
            got = load(f)["a1"].link
        except RegistryError as exc:
            assert f"{f}: line 2.link: expected one of {LINKS}" in str(exc)
            assert text not in LINKS and text != ""
        else:
            assert got == (text or "wired") and got in LINKS


@pytest.mark.parametrize(("text", "message"), [
    ("devices:\n  - {id: a1, site: s, township: t, grid: g, lat: 95, lon: 1}\n",
     "devices[0].lat: expected a number in -90..90, got 95"),
    ("devices:\n  - {id: a1, site: s, township: t, grid: g, lat: 1, lon: 1}\n"
     "  - {id: a1, site: s, township: t, grid: g, lat: 1, lon: 1}\n",
     "devices[1].id: duplicate device id 'a1'"),
    ("devices:\n  - {id: a1, site: s, grid: g, lat: 1, lon: 1}\n",
     "devices[0].township: required"),
    ("devices:\n  - {id: 'a 1', site: s, township: t, grid: g, lat: 1, lon: 1}\n",
     "devices[0].id: expected a device id"),
    ("devices:\n  - {id: a1, site: s, township: t, grid: g, lat: 1, lon: 1, sensor: x}\n",
     "devices[0].sensor: expected one of"),
    ("devices:\n  - {id: a1, site: s, township: t, grid: g, lat: 1, lon: 1,"
     " calibration: {formula: magic}}\n", "devices[0].calibration.formula: expected one of"),
    ("devices:\n  - {id: a1, site: s, township: t, grid: g, lat: 1, lon: 1,"
     " calibration: {formula: linear, slope: 1}}\n",
     "devices[0].calibration.intercept: required by formula linear"),
    ("devices:\n  - {id: a1, site: s, township: t, grid: g, lat: 1, lon: 1,"
     " contacts: [{name: x, phone: '13800000000'}]}\n",
     "devices[0].contacts[0].phone: expected international form"),
    ("devices:\n  - {id: a1, site: s, township: t, grid: g, lat: 1, lon: 1,"
     " technician: {name: x, phone: '136'}}\n",
     "devices[0].technician.phone: expected international form"),
    ("devices:\n  - {id: a1, site: s, township: t, grid: g, lat: 1, lon: 1,"
     " technician: [{name: x, phone: '+8613600000005'}]}\n",
     "devices[0].technician: expected one {name, phone}, got a list"),
    ("devices:\n  - {id: a1, site: s, township: t, grid: g, lat: 1, lon: 1, colour: red}\n",
     "devices[0]: unknown key 'colour'"),
    ("devices:\n  - {id: a1, site: s, township: t, grid: g, lat: 1, lon: 1, link: 5g}\n",
     "devices[0].link: expected one of ('wired', 'wifi', 'cellular'), got '5g'"),
    ("devices: [\n", "not valid YAML"),
    ("sensors: []\n", "devices: expected a list"),
])
def test_yaml_errors_name_file_entry_and_key(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "reg.yaml"
    f.write_text(text)
    with pytest.raises(RegistryError) as info:
        load(f)
    assert str(f) in str(info.value) and message in str(info.value)


def test_csv_errors_name_the_line(tmp_path: Path) -> None:
    f = tmp_path / "reg.csv"
    f.write_text("id,site,township,grid,lat,lon\na1,s,t,g,1,2\na2,s,t,g,north,2\n")
    with pytest.raises(RegistryError, match=r"reg\.csv: line 3\.lat: expected a number"):
        load(f)
    f.write_text("id,site,township,grid,lat\na1,s,t,g,1\n")
    with pytest.raises(RegistryError, match="header: missing column 'lon'"):
        load(f)
    f.write_text("id,site,township,grid,lat,lon,calibration\na1,s,t,g,1,2,linear;slope=x\n")
    with pytest.raises(RegistryError, match=r"line 2\.calibration\.slope: expected a number"):
        load(f)


def test_reload_on_change_and_a_bad_file_keeps_the_last_good_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "reg.yaml"
    f.write_text("devices:\n  - {id: a1, site: s1, township: t, grid: g, lat: 1, lon: 1}\n")
    w = RegistryWatcher(f, check_interval_s=0.01)
    assert w.devices["a1"].site == "s1"
    time.sleep(0.02)
    assert not w.poll()  # unchanged
    f.write_text("devices:\n  - {id: a1, site: s2, township: t, grid: g, lat: 1, lon: 1}\n"
                 "  - {id: a2, site: s3, township: t, grid: g, lat: 1, lon: 1}\n")
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert wait_for(w.poll, 10)  # parsed on its own thread, swapped in by a later poll
    assert w.devices["a1"].site == "s2" and "a2" in w.devices and w.generation == 2
    f.write_text("devices:\n  - {id: a1, site: s9, township: t, grid: g, lat: 999, lon: 1}\n")
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert wait_for(lambda: not w.poll() and w.reload_errors == 1, 10)
    assert w.devices["a1"].site == "s2" and w.generation == 2
    assert f"{f}: devices[0].lat: expected a number" in caplog.text


def _csv(rows: list[tuple[str, str]]) -> str:
    return "id,site,township,grid,lat,lon\n" + "".join(
        f"{i},{site},t,g,1,2\n" for i, site in rows)


def test_a_reload_is_parsed_off_the_polling_thread_which_never_waits_for_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline's thread polls: while a reload is being parsed it gets the old
    registry at once; the parsed one is swapped in by a poll after the parse."""
    f = tmp_path / "reg.csv"
    f.write_text(_csv([("a1", "s1")]))
    w = RegistryWatcher(f, check_interval_s=0.01)
    release = threading.Event()
    threads: list[str] = []
    real = RegistryParser.load

    def slow_load(self: RegistryParser, path: Path,
                  beside_ingest: bool = False) -> dict[str, object]:
        threads.append(threading.current_thread().name)
        assert beside_ingest  # it gives the interpreter lock away every few rows
        assert release.wait(10)
        return real(self, path, beside_ingest=beside_ingest)  # type: ignore[return-value]

    monkeypatch.setattr(RegistryParser, "load", slow_load)
    f.write_text(_csv([("a1", "s2")]))
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert wait_for(lambda: (w.poll(), w.parsing)[1], 10)
    started = time.perf_counter()
    for _ in range(50):  # the parse is held: every poll returns at once, old registry
        assert not w.poll() and w.devices["a1"].site == "s1"
    assert time.perf_counter() - started < 0.5
    release.set()
    assert wait_for(w.poll, 10) and w.devices["a1"].site == "s2"
    assert threads == ["registry-parse"]


def test_a_reload_reuses_unchanged_rows_and_hands_on_only_what_changed(
        tmp_path: Path) -> None:
    f = tmp_path / "reg.csv"
    rows = [(f"d{i:04d}", f"s{i}") for i in range(2000)]
    f.write_text(_csv(rows))
    w = RegistryWatcher(f, check_interval_s=0.0, background=False)
    engine = Engine([])
    points = CountyPoints()
    feed = RegistryFeed(w, engine, points)
    assert feed.update(1000) and len(points.take()) == 2000  # start-up: every place
    before = dict(w.devices)
    rows[7] = ("d0007", "moved")
    rows.append(("new1", "s-new"))
    f.write_text(_csv(rows))
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert w.poll() and len(w.devices) == 2001
    unchanged = [k for k in before if k != "d0007"]
    assert all(w.devices[k] is before[k] for k in unchanged)  # not parsed again
    assert feed.update(2000)
    lines = points.take()
    assert len(lines) == 2 and any("device=d0007" in x and "site=moved" in x for x in lines)
    assert "new1" in engine.fleet.registry and len(engine.fleet.registry) == 2001
    assert w.changed == ["d0007", "new1"]  # worked out on the parse thread
    # the engine's side was compared there too: a site is no news to the rules
    assert isinstance(w.prepared, Handover)
    change = w.prepared.change
    assert (change.added, change.removed, change.changed, change.moved) == (
        ["new1"], [], [], True)  # new1 has a place: neighbours change


@settings(max_examples=40, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 12), st.sampled_from(
    ["s", "t", "s2", "gone"])), min_size=1, max_size=8))
def test_a_reload_drops_only_the_tags_it_changed(edits: list[tuple[int, str]]) -> None:
    """After reloads that add, edit and remove rows, every cached tag equals what a fresh
    cache gives, and an untouched device's tags are the very string cached before."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "reg.csv"
        rows = {f"d{i}": f"s{i}" for i in range(8)}
        f.write_text(_csv(sorted(rows.items())))
        w = RegistryWatcher(f, check_interval_s=0.0, background=False)
        tags = TagCache(w)
        ids = [f"d{i}" for i in range(13)]
        for i, site in edits:
            before = {x: tags.reading(x, "pms5003", 0) for x in ids}
            if site == "gone":
                rows.pop(f"d{i}", None)
            else:
                rows[f"d{i}"] = site
            f.write_text(_csv(sorted(rows.items())))
            os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
            assert tags.refresh()
            fresh = TagCache(w)
            for x in ids:
                got = tags.reading(x, "pms5003", 0)
                assert got == fresh.reading(x, "pms5003", 0)
                if x not in w.changed:
                    assert got is before[x]


def test_the_start_up_registry_is_prepared_beside_ingest(tmp_path: Path) -> None:
    """With a background watcher, building the feed does not wait for the start-up
    registry's preparation (every device's place and the neighbour layouts: ~1 s of CPU
    at 100,000 devices); the pipeline's `update` hands it on once it is ready."""
    f = tmp_path / "reg.csv"
    f.write_text(_csv([(f"d{i:04d}", f"s{i}") for i in range(50)]))
    w = RegistryWatcher(f, check_interval_s=60.0)
    release = threading.Event()

    class HeldFeed(RegistryFeed):
        def prepare(self, devices: dict[str, Device]) -> Handover:
            assert release.wait(10)
            return super().prepare(devices)

    engine = build_engine([], w.devices)
    points = CountyPoints()
    started = time.perf_counter()
    feed = HeldFeed(w, engine, points)
    assert time.perf_counter() - started < 0.5
    assert not feed.update(1000) and not feed.wait_ready(0.1) and points.take() == []
    release.set()
    assert feed.wait_ready(10) and feed.update(2000) and len(points.take()) == 50
    assert not feed.update(3000)  # handed on once


def test_the_engine_judges_the_registrys_own_entries(tmp_path: Path) -> None:
    """The engine takes the parsed registry's entries as they are: no copy of each
    device at start-up or at a reload (100,000 of them cost 0.4 s), and the feed's
    first hand-on changes nothing in the engine yet writes every device's place. A
    reload hands on the new entries; an unchanged row stays the same object."""
    f = tmp_path / "reg.csv"
    f.write_text(_csv([(f"d{i:04d}", f"s{i}") for i in range(50)]))
    w = RegistryWatcher(f, check_interval_s=0.0, background=False)
    engine = build_engine([], w.devices)
    assert all(engine.fleet.registry[k] is d for k, d in w.devices.items())
    points = CountyPoints()
    feed = RegistryFeed(w, engine, points)
    assert feed.update(1000) and len(points.take()) == 50
    assert all(engine.fleet.registry[k] is d for k, d in w.devices.items())
    before = dict(w.devices)
    f.write_text(_csv([(f"d{i:04d}", "moved" if i == 3 else f"s{i}") for i in range(50)]))
    os.utime(f, ns=(time.time_ns() + 10**9,) * 2)
    assert w.poll() and feed.update(2000)
    assert engine.fleet.registry["d0003"] is w.devices["d0003"] is not before["d0003"]
    assert engine.fleet.registry["d0003"].site == "moved"
    assert all(engine.fleet.registry[k] is before[k] for k in before if k != "d0003")
    assert [p.split(",")[1] for p in points.take()] == ["device=d0003"]


@settings(max_examples=40, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 30), st.sampled_from(
    ["s", "t", "x\\", "", "s2", "é"])), max_size=12))
def test_an_incremental_reparse_equals_a_fresh_parse(edits: list[tuple[int, str]]) -> None:
    """Whatever rows change (some into errors), the parser that remembers rows gives the
    same registry, or the same error, as one that parses everything."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "reg.csv"
        rows = [(f"d{i}", f"s{i}") for i in range(20)]
        f.write_text(_csv(rows))
        parser = RegistryParser()
        parser.load(f)
        for i, site in edits:
            if i < len(rows):
                rows[i] = (rows[i][0], site)
            else:
                rows.append((f"d{i % 25}", site))  # may duplicate an id
            f.write_text(_csv(rows), encoding="utf-8")
            try:
                fresh: object = load(f)
            except RegistryError as exc:
                fresh = str(exc)
            try:
                again: object = parser.load(f)
            except RegistryError as exc:
                again = str(exc)
            assert again == fresh


def test_calibration_formulas() -> None:
    epa = calibration.parse({"formula": "epa_purpleair_2021"}, "x")
    # Barkjohn et al. 2021: 0.524·cf1 − 0.0862·RH + 5.75
    assert epa.correct(40.0, 50.0, 60.0) == pytest.approx(0.524 * 50 - 0.0862 * 60 + 5.75,
                                                          abs=0.01)
    assert epa.correct(40.0, 50.0, None) is None
    lin = calibration.parse({"formula": "linear", "slope": 0.5, "intercept": -10}, "x")
    assert lin.correct(40.0, None, None) == 10.0 and lin.correct(10.0, None, None) == 0.0
    k = calibration.parse({"formula": "kohler", "kappa": 0.4}, "x")
    # Crilley et al. 2018: at RH 80 %, aw/(1-aw) = 4, growth = 1 + 0.4/1.65·4
    assert k.correct(50.0, None, 80.0) == pytest.approx(50 / (1 + 0.4 / 1.65 * 4), abs=0.01)


@pytest.fixture
def ingest(mosquitto: Mosquitto, influx_db_name: str) -> Iterator[MqttIngest]:
    i = MqttIngest("127.0.0.1", mosquitto.port, f"r-{influx_db_name}", "airgrid", 100)
    i.start()
    assert i.connected.wait(10)
    yield i
    i.stop()


def test_registry_tags_corrected_fields_and_unknown_policy(
        tmp_path: Path, ingest: MqttIngest, shared_influxdb: InfluxDB,
        influx_db_name: str) -> None:
    reg = tmp_path / "reg.yaml"
    reg.write_text(
        "devices:\n  - {id: k1, site: 'gov roof', township: 城关镇, grid: CG-01, lat: 30,"
        " lon: 114, calibration: {formula: linear, slope: 0.5, intercept: 2}}\n")
    sink = InfluxV1Sink(shared_influxdb.url, influx_db_name)
    p = build_pipeline(from_dict({}), ingest, sink, Engine([]), registry=RegistryWatcher(reg))
    now = int(time.time() * 1000)
    p.process([Delivery("airgrid/v1/dev/k1/up", up_payload("k1", [reading(1, now, 40.0)]),
                        0, 0, 0),
               Delivery("airgrid/v1/dev/u9/up", up_payload("u9", [reading(1, now, 30.0)]),
                        0, 0, 0)])
    rows = {r["device"]: r for r in stored_rows(shared_influxdb, influx_db_name)}
    k1, u9 = rows["k1"], rows["u9"]
    assert (k1["site"], k1["township"], k1["grid"], k1["cal"]) == (
        "gov roof", "城关镇", "CG-01", "linear")
    assert k1["pm2_5"] == 40.0 and k1["pm2_5_corr"] == 22.0
    assert u9["unregistered"] == "true" and u9["pm2_5_corr"] is None
    assert p.counters.unknown_device_readings == 1

    p.builder.intake = Intake(unknown_devices="reject")
    p.process([Delivery("airgrid/v1/dev/u8/up", up_payload("u8", [reading(1, now, 1.0)]),
                        0, 0, 0)])
    assert p.counters.rejected["unknown_device"] == 1


@pytest.mark.parametrize(("cell", "what"), [
    ("东城\\", "U+005C REVERSE SOLIDUS"),  # a trailing backslash: InfluxDB refuses the tag
    ('"a\nb"', "U+000A CONTROL CHARACTER"),  # a quoted CSV cell may hold a line break
    ("a\x07b", "U+0007"),
    ("a\u2028b", "U+2028 LINE SEPARATOR"),
])
def test_check_config_refuses_a_tag_line_protocol_cannot_carry(
        tmp_path: Path, cell: str, what: str) -> None:
    """Before: accepted by check-config, then every reading of the device was refused by
    InfluxDB after the ack. The error names file, line and column."""
    reg = tmp_path / "reg.csv"
    reg.write_text(f"id,site,township,grid,lat,lon\na1,ok,t,g,1,2\na2,{cell},t,g,1,2\n",
                   encoding="utf-8")
    cfg = tmp_path / "collector.toml"
    cfg.write_text(f'[registry]\nfile = "{reg}"\n')
    out = subprocess.run([sys.executable, "-m", "collector.cli", "check-config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout
    assert f"{reg}: line " in out.stderr and ".site: character" in out.stderr
    assert what in out.stderr


_cells = {
    "id": st.sampled_from(["a1", " a2 ", "", "a 1", "x" * 70, "d-0001"]),
    "name": st.sampled_from(["", "站点", " n "]),
    "site": st.sampled_from(["s", "", " ", "a\\", "东城", "a\u2028b", "a\x07"]),
    "township": st.sampled_from(["t", "", "河西乡"]),
    "grid": st.sampled_from(["g", "", "G-1"]),
    "lat": st.sampled_from(["1", "95", "-90", "nan", "north", "", " 30.5 ", "inf"]),
    "lon": st.sampled_from(["2", "-181", "180", "1e2", ""]),
    "sensor": st.sampled_from(["", "sds011", "x", " pms5003 "]),
    "link": st.sampled_from(["", "wifi", "5g"]),
    "calibration": st.sampled_from(["", "linear;slope=0.9;intercept=1", "magic",
                                    "linear;slope=x", "epa_purpleair_2021"]),
    "contacts": st.sampled_from(["", "李:+8613900000001", "x:138", ":+8613900000001",
                                 "a:+8613900000001|b:+8613900000002"]),
    "technician": st.sampled_from(["", "王:+8613900000009", "w:12", "a:+8613900000001|b:1"]),
}
#: cells every one of which is good: whole files of them take the column-wise path
_good_cells = {
    "id": st.sampled_from(["a1", " a2 ", "d-0001", "b.3", "c_4", "e5"]),
    "name": st.sampled_from(["", "站点", " n "]),
    "site": st.sampled_from(["s", " ", "东城"]),
    "township": st.sampled_from(["t", "河西乡", " t\t"]),
    "grid": st.sampled_from(["g", "G-1"]),
    "lat": st.sampled_from(["1", "-90", " 30.5 ", "1e1"]),
    "lon": st.sampled_from(["2", "180", "1e2"]),
    "sensor": st.sampled_from(["", "sds011", " pms5003 "]),
    "link": st.sampled_from(["", "wifi", "cellular"]),
    "calibration": st.sampled_from(["", "linear;slope=0.9;intercept=1"]),
    "contacts": st.sampled_from(["李:+8613900000001", " x : +8613900000002 ",
                                 "a:+8613900000001|b:+8613900000002", ""]),
    "technician": st.sampled_from(["", "王:+8613900000009"]),
}


@settings(max_examples=300, deadline=None)
@given(row=st.fixed_dictionaries(_cells), columns=st.permutations(list(_cells)))
def test_the_fast_csv_row_path_gives_what_the_generic_one_does(
        row: dict[str, str], columns: list[str]) -> None:
    """A row the fast path accepts is the device the generic path makes; a row with any
    error falls back to the generic path, which words it."""
    from collector.registry import COLUMNS, _csv_row_fast, parse_device

    cells = [row[c] for c in columns]
    ix = tuple(columns.index(c) if c in columns else -1 for c in COLUMNS)
    fast = _csv_row_fast(cells, ix, "f: line 2")
    try:
        slow = parse_device(dict(zip(columns, cells, strict=True)), "f: line 2")
    except RegistryError:
        assert fast is None
    else:
        assert fast == slow and repr(fast) == repr(slow)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.one_of(st.fixed_dictionaries(_good_cells), st.just({}),
                               st.fixed_dictionaries(_cells)), max_size=8),
       columns=st.permutations(list(_cells)), cut=st.integers(0, 12),
       known=st.booleans(), chunk=st.integers(1, 4), beside=st.booleans())
def test_a_whole_file_checked_by_column_gives_what_checking_each_row_gives(
        rows: list[dict[str, str]], columns: list[str], cut: int, known: bool,
        chunk: int, beside: bool) -> None:
    """The column-wise path over a whole file (the usual case) gives the same registry,
    in the same order, as the row-by-row path, or leaves the file to it, which words the
    same error; with rows parsed before (a reload) too. Rows: any mix of good and bad
    cells, blank lines ({}), a short row (`cut`), duplicate ids, in chunks of any size
    (`chunk` rows checked together)."""
    import tempfile

    from collector import registry

    lines = [",".join(columns)]
    for i, row in enumerate(rows):
        cells = [row[c] for c in columns] if row else []
        lines.append(",".join(cells[:cut] if i == len(rows) - 1 else cells))
    text = "\n".join(lines) + "\n"
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "reg.csv"
        f.write_text(text, encoding="utf-8")

        def parse(parser: RegistryParser) -> object:
            try:
                return list(parser.load(f, beside_ingest=beside).items())
            except RegistryError as exc:
                return str(exc)

        bulk, row_wise = RegistryParser(), RegistryParser()
        row_wise._csv_bulk = lambda *args: None  # type: ignore[method-assign]
        if known:  # rows of an earlier file, as a reload has them
            f.write_text("\n".join(lines[:1] + lines[1:3]) + "\n", encoding="utf-8")
            parse(bulk)
            parse(row_wise)
            f.write_text(text, encoding="utf-8")
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(registry, "BULK_ROWS", chunk)
            mp.setattr(registry, "BULK_ROWS_BESIDE_INGEST", chunk)
            assert parse(bulk) == parse(row_wise)


@settings(max_examples=8, deadline=None)
@given(rows=st.lists(st.one_of(st.fixed_dictionaries(_good_cells),
                               st.fixed_dictionaries(_cells)), min_size=1, max_size=6),
       columns=st.permutations(list(_cells)))
def test_check_config_of_a_generated_csv_registry_says_what_the_row_by_row_check_says(
        rows: list[dict[str, str]], columns: list[str]) -> None:
    """The real `collector check-config` process on generated CSV registries: it accepts
    a file with the device count, or refuses it (exit 2) with the very message the
    row-by-row check words, whichever path the file took inside."""
    import tempfile

    text = ",".join(columns) + "\n" + "".join(
        ",".join(row[c] for c in columns) + "\n" for row in rows)
    with tempfile.TemporaryDirectory() as d:
        reg, cfg = Path(d) / "reg.csv", Path(d) / "collector.toml"
        reg.write_text(text, encoding="utf-8")
        cfg.write_text(f'[registry]\nfile = "{reg}"\n')
        row_wise = RegistryParser()
        row_wise._csv_bulk = lambda *args: None  # type: ignore[method-assign]
        try:
            want: str | int = len(row_wise.load(reg))
        except RegistryError as exc:
            want = str(exc)
        out = subprocess.run([sys.executable, "-m", "collector.cli", "check-config", str(cfg)],
                             capture_output=True, text=True, timeout=60)
    event("accepted" if isinstance(want, int) else "refused")
    if isinstance(want, int):
        assert out.returncode == 0, out.stderr
        assert f"{want} registered devices" in out.stdout
    else:
        assert out.returncode == 2, out.stdout
        assert f"error: {want}" in out.stderr


def test_the_usual_file_is_checked_column_by_column(tmp_path: Path) -> None:
    """A good file takes the column-wise path (else the test above proves nothing); a
    file with a bad cell anywhere leaves it, for the row-by-row path to word."""
    f = tmp_path / "reg.csv"
    f.write_text("id,name,site,township,grid,lat,lon,sensor,link,calibration,contacts,"
                 "technician\n"
                 "a1,站,s,t,g,1,2,sds011,wifi,linear;slope=0.9;intercept=1,李:+8613900000001,"
                 "王:+8613900000009\n"
                 "a2,,s,t,g,1,2,,,,a:+8613900000001|b:+8613900000002,\n", encoding="utf-8")
    parser = RegistryParser()
    seen: list[object] = []
    real = parser._csv_bulk

    def spy(*args: Any) -> dict[str, Device] | None:
        seen.append(out := real(*args))
        return out

    parser._csv_bulk = spy  # type: ignore[method-assign]
    devices = parser.load(f)
    assert seen == [devices] and devices["a2"].contacts[1] == ("b", "+8613900000002")
    assert devices["a1"].technician == ("王", "+8613900000009")
    f.write_text(f.read_text(encoding="utf-8").replace(",2,sds011", ",200,sds011"),
                 encoding="utf-8")
    with pytest.raises(RegistryError, match=r"line 2\.lon: expected a number"):
        parser.load(f)
    assert seen[1] is None


def test_device_places_ride_with_several_batches_not_one() -> None:
    points = CountyPoints()
    points.add([f"device_location,device=d{i} latitude=1.0 1" for i in range(12_000)])
    parts = [points.take(5000) for _ in range(4)]
    assert [len(p) for p in parts] == [5000, 5000, 2000, 0]
    assert parts[0][0].startswith("device_location,device=d0 ")  # oldest first
    assert parts[2][-1].startswith("device_location,device=d11999 ")
