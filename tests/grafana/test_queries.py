"""Every panel, variable and annotation query of the committed dashboards, with Grafana's
macros substituted, runs against a real InfluxDB filled by the real simulator, edge agents
and collector (with its device registry and alerting), and returns the columns its panel
reads, non-empty.

Readings, device status, hourly aggregates, device places (`device_location`) and every
alert event (`alert_events`: firing, escalated, acknowledged, resolved, notified,
notify_failed) are written by the collector through real episodes: one that passes, one
that lasts; a grid worker acknowledges over the collector's HTTP API; the escalation
notices go to a webhook that nobody answers. Only the humidity sensor's readings are
written by the test (the simulator plays the PMS5003, which measures no humidity),
through InfluxDB's real `/write` with the collector's own line-protocol code.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airgrid.wire import Reading
from collector.line_protocol import READINGS, escape_tag, fields_of, tag_set
from grafana import generate, macros, queries
from grafana.macros import VariableValue
from grafana.model import Annotation, Dashboard, Target
from orchestration.services import InfluxDB, Mosquitto, free_port
from orchestration.stack import SimDevice, Stack, Timing
from tests.support.alerting import BUREAU, toml_entries
from tests.support.integration import process_fixture
from tests.support.wait import wait_for

STACK_DEVICES = [
    SimDevice("gq-clean", "clean", baseline=25, seed=11),
    # passes: fires, escalates, is acknowledged, resolves
    SimDevice("gq-episode", "episode", baseline=40, peak=230, episode_start_s=2,
              episode_length_s=10, seed=12),
    # lasts while the dashboards are queried: an open alert
    SimDevice("gq-smog", "episode", baseline=40, peak=230, episode_start_s=2,
              episode_length_s=3600, seed=14),
    SimDevice("gq-leaving", "clean", baseline=30, seed=13),
]
HUMID_DEVICE = "gq-pms5003t"
ACK_TOKEN = "gq-ack-token-0123456789"


def _write(influx: InfluxDB, db: str, lines: list[str]) -> None:
    req = urllib.request.Request(f"{influx.url}/write?db={db}&precision=ms",
                                 data="\n".join(lines).encode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204


def _humid_readings(now: int) -> list[str]:
    lines: list[str] = []
    tags = tag_set({"device": HUMID_DEVICE, "site": "xh-school", "township": "xinhe",
                    "grid": "xinhe-03"})
    for i in range(20):
        r = Reading(seq=i + 1, ts=now - (20 - i) * 30_000, sensor="pms5003t", pm1_0=20.0,
                    pm2_5=33.0 + i, pm10=41.0 + i, pm1_0_cf1=21.0, pm2_5_cf1=35.0 + i,
                    pm10_cf1=44.0 + i, temperature_c=12.5, humidity_pct=80.0 + i / 2,
                    flags=("high_humidity",) if i > 10 else ())
        lines.append(f"{READINGS}{tags},sensor={escape_tag(r.sensor)} {fields_of(r)} {r.ts}")
    return lines


def _registry(path: Path) -> None:
    rows = ["id,name,site,township,grid,lat,lon,link"]
    for k, d in enumerate([*(s.device for s in STACK_DEVICES), HUMID_DEVICE]):
        rows.append(f"{d},站点{k},s{k},xinhe,xinhe-0{k},{36.1 + k / 100},{117.2 + k / 100},"
                    f"{'cellular' if k % 2 else 'wired'}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _collector_extra(work: Path, ack_port: int) -> str:
    token = work / "ack.token"
    token.write_text(ACK_TOKEN)
    secret = work / "webhook.secret"
    secret.write_text("gq-webhook-secret-0123456789")
    for f in (token, secret):
        f.chmod(0o600)
    registry = work / "registry.csv"
    _registry(registry)
    return f"""[registry]
file = "{registry}"
[alerting]
state_db = "{work / 'alerts.db'}"
[alerting.ack]
http_port = {ack_port}
mqtt = false
{toml_entries("alerting.ack.principals",
               {"name": "网格员 张伟", "phone": BUREAU, "token_file": str(token)})}
{toml_entries("alerting.contacts.officers",
               {"role": "county_bureau", "township": "*", "name": "网格员 张伟", "phone": BUREAU})}
[alerting.channels.hook]
type = "webhook"
url = "http://127.0.0.1:{free_port()}/nobody-listens"
secret_file = "{secret}"
max_attempts = 1
[alerting.receivers.township]
targets = [{{ channel = "hook", to = "ops" }}]
[[alerting.escalation]]
after = "2s"
receivers = ["township"]
"""


def _ack(port: int, alert_id: int) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/alerts/{alert_id}/ack",
        data=json.dumps({"by": "网格员 张伟"}).encode(), method="POST",
        headers={"Authorization": f"Bearer {ACK_TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def _events(influx: InfluxDB, db: str, where: str) -> list[dict[str, Any]]:
    res: Any = influx.query(f"SELECT * FROM alert_events WHERE {where}", db=db)
    series = res["results"][0].get("series") or []
    return [dict(zip(s["columns"], v, strict=True)) for s in series for v in s["values"]]


@process_fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory,
           shared_influxdb: InfluxDB) -> Iterator[tuple[InfluxDB, str]]:
    work = tmp_path_factory.mktemp("grafana-queries")
    broker = Mosquitto(work / "mosquitto")
    broker.start()
    db = f"gq_{int(time.time())}"
    ack_port = free_port()
    stack = Stack(work / "stack", broker, shared_influxdb, STACK_DEVICES,
                  Timing(frame_period_s=0.1, sample_interval_s=0.5, status_interval_s=1.0),
                  database=db, collector_extra=_collector_extra(work, ack_port))
    influx = shared_influxdb

    def event(where: str) -> list[dict[str, Any]]:
        return _events(influx, db, where)

    try:
        stack.start()
        wait_for(lambda: min(stack.stored().values()) >= 8, 60, step=0.5)
        # A clean stop publishes "offline": the fleet view must show it on top.
        stack._terminate(stack.agents.pop("gq-leaving"))

        def offline_stored() -> bool:
            res = influx.query(
                "SELECT last(online) FROM device_status WHERE device='gq-leaving'", db=db)
            series = res["results"][0].get("series")  # type: ignore[index]
            return bool(series) and series[0]["values"][0][1] is False

        assert wait_for(offline_stored, 60, step=0.3), (
            "the stopped agent's offline status never reached InfluxDB")
        # The passing episode: fired, escalated (nobody acknowledged in 2 s), then a grid
        # worker acknowledges; it resolves when the episode is over.
        assert wait_for(lambda: event("device='gq-episode' AND state='escalated'"), 60,
                        step=0.3), "no escalation written"
        fired = event("device='gq-episode' AND state='firing'")
        assert fired[0]["township"] == "xinhe" and fired[0]["grid"] == "xinhe-01"
        _ack(ack_port, int(fired[0]["alert_id"]))
        for what in ("device='gq-episode' AND state='acknowledged'",
                     "device='gq-episode' AND state='resolved'",
                     "device='gq-smog' AND state='firing'",
                     "state='notified' AND channel='bus'",
                     "state='notify_failed' AND channel='hook'"):
            assert wait_for(lambda w=what: event(w), 60, step=0.3), f"no {what} written"
        places: Any = influx.query('SELECT last("latitude") FROM device_location '
                                   'GROUP BY "device"', db=db)
        assert {s["tags"]["device"] for s in places["results"][0]["series"]} == {
            *(d.device for d in STACK_DEVICES), HUMID_DEVICE}  # from the collector
        _write(influx, db, _humid_readings(int(time.time() * 1000)))
        # The others keep running while the dashboards are queried, as in the county.
        yield influx, db
    finally:
        stack.stop()
        broker.stop()


def _run(influx: InfluxDB, db: str, q: str) -> list[dict[str, Any]]:
    res = influx.query(q, db=db)
    result = res["results"][0]  # type: ignore[index]
    assert "error" not in result, f"{result['error']}\n{q}"
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def _assert_columns(series: list[dict[str, Any]], expect: tuple[str, ...], where: str) -> None:
    assert series, f"{where}: no rows"
    for name in expect:
        tagged = [s for s in series if name in (s.get("tags") or {})]
        if tagged:
            continue
        having = [s for s in series if name in s["columns"]]
        assert having, f"{where}: no column {name!r} in {[s['columns'] for s in series]}"
        values = [row[s["columns"].index(name)] for s in having for row in s["values"]]
        assert any(v is not None for v in values), f"{where}: {name!r} is all null"


def _checks(d: Dashboard) -> list[tuple[str, str, tuple[str, ...]]]:
    """(where, raw query, expected columns) for every target and annotation."""
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for i, p in enumerate(d.panels, start=1):
        for t in p.targets:
            assert isinstance(t, Target)
            out.append((f"{d.uid} panel {i} {p.title!r} [{t.ref_id}]", t.query, t.expect))
    for a in d.annotations:
        assert isinstance(a, Annotation)
        out.append((f"{d.uid} annotation {a.name!r}", a.query, a.expect))
    return out


def _window() -> tuple[int, int]:
    now = int(time.time() * 1000)
    return now - 3_600_000, now + 60_000


def _variables(influx: InfluxDB, db: str, d: Dashboard, fixed: dict[str, str]
               ) -> dict[str, VariableValue]:
    """Resolve variables in order as Grafana does: run each one's query (it must return
    values), then take All, or the fixed value, which must be among them."""
    start, end = _window()
    values: dict[str, VariableValue] = {}
    for v in d.variables:
        q = macros.render(v.query, start, end, "5s", values)
        series = _run(influx, db, q)
        found = {row[1] for s in series for row in s["values"]}
        assert found, f"{d.uid} variable {v.name}: no values\n{q}"
        if v.name in fixed:
            assert fixed[v.name] in found, (v.name, found)
            values[v.name] = VariableValue((fixed[v.name],), v.multi or v.include_all)
        else:
            assert v.include_all, f"{d.uid}: ${v.name} needs a value"
            values[v.name] = VariableValue((macros.ALL,))
    return values


def _run_dashboard(influx: InfluxDB, db: str, d: Dashboard, fixed: dict[str, str],
                   skip: tuple[str, ...] = (), only: str = "") -> int:
    start, end = _window()
    values = _variables(influx, db, d, fixed)
    n = 0
    for where, raw, expect in _checks(d):
        if any(s in where for s in skip) or only not in where:
            continue
        q = macros.render(raw, start, end, "5s", values)
        _assert_columns(_run(influx, db, q), expect, f"{where}\n{q}")
        n += 1
    return n


BOARDS = {d.uid: d for d in generate.dashboards()}


def test_overview_fleet_and_alerts_queries_return_their_columns(
    filled: tuple[InfluxDB, str]
) -> None:
    influx, db = filled
    ran = sum(_run_dashboard(influx, db, BOARDS[uid], {})
              for uid in ("airgrid-overview", "airgrid-fleet"))
    ran += _run_dashboard(influx, db, BOARDS["airgrid-alerts"], {})
    assert ran == sum(len(_checks(BOARDS[u]))
                      for u in ("airgrid-overview", "airgrid-fleet", "airgrid-alerts"))


def test_device_dashboard_for_a_simulated_device_and_a_humidity_sensor(
    filled: tuple[InfluxDB, str]
) -> None:
    influx, db = filled
    board = BOARDS["airgrid-device"]
    # The simulated PMS5003 measures no humidity: that panel is proven on the PMS5003T.
    ran = _run_dashboard(influx, db, board, {"device": "gq-episode"}, skip=("Humidity",))
    assert ran == len(_checks(board)) - 1
    assert _run_dashboard(influx, db, board, {"device": HUMID_DEVICE, "township": "xinhe"},
                          only="Humidity") == 1


def test_fleet_table_puts_the_stopped_device_offline_and_others_online(
    filled: tuple[InfluxDB, str]
) -> None:
    influx, db = filled
    table = next(p for p in BOARDS["airgrid-fleet"].panels if p.type == "table")
    start, end = _window()
    values = _variables(influx, db, BOARDS["airgrid-fleet"], {})

    def last(ref: str, column: str) -> dict[str, Any]:
        target = next(t for t in table.targets if t.ref_id == ref)
        series = _run(influx, db, macros.render(target.query, start, end, "5s", values))
        return {s["tags"]["device"]: s["values"][0][s["columns"].index(column)]
                for s in series}

    assert last("A", "online") == {"gq-clean": True, "gq-episode": True, "gq-smog": True,
                                   "gq-leaving": False}
    # The stopped device keeps the version it last reported while online.
    versions = last("B", "agent_version")
    assert set(versions) == {"gq-clean", "gq-episode", "gq-smog", "gq-leaving"}
    assert all(versions.values()), versions


def test_township_filter_narrows_to_registered_devices(filled: tuple[InfluxDB, str]) -> None:
    influx, db = filled
    trend = BOARDS["airgrid-overview"].panels[-1].targets[0]
    start, end = _window()
    q = macros.render(trend.query, start, end, "5s", {
        "township": VariableValue(("xinhe",)), "grid": VariableValue((macros.ALL,))})
    towns = {s["tags"]["township"] for s in _run(influx, db, q)}
    assert towns == {"xinhe"}


def test_render_queries_cli_substitutes_every_macro(capsys: pytest.CaptureFixture[str]) -> None:
    from grafana.cli import main

    assert main(["render-queries", "--from", "now-2h", "--interval", "30s",
                 "--var", "device=gq-clean"]) == 0
    out = capsys.readouterr().out
    assert "$timeFilter" not in out and "$__interval" not in out and "$device" not in out
    assert "GROUP BY time(30s)" in out and "/^gq-clean$/" in out
    n = sum(1 for d in generate.load_committed() for _ in queries.raw_queries(d))
    assert out.count(";\n") == n


def test_stale_dashboards_are_reported(tmp_path: Path) -> None:
    generate.write(tmp_path)
    assert generate.stale(tmp_path) == []
    first = sorted(tmp_path.glob("*.json"))[0]
    first.write_text(first.read_text() + " ")
    assert generate.stale(tmp_path) == [first.name]
