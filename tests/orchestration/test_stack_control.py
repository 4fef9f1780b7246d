"""`airgrid stack up|down|status`: a county that outlives the command, stopped by PID."""

from __future__ import annotations

import json
import os
import sys
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from orchestration import stack_control
from orchestration.admin import worker_links
from tests.support.integration import Processes
from tests.support.wait import wait_for


def _airgrid(processes: Processes, *args: str) -> str:
    out = processes.run([sys.executable, "-m", "orchestration.cli", *args],
                        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _stored(influx_url: str, db: str) -> dict[str, int]:
    q = urllib.parse.urlencode({"db": db, "q": "SELECT count(pm2_5) FROM readings GROUP BY device"})
    with urllib.request.urlopen(f"{influx_url}/query?{q}", timeout=5) as resp:
        res = json.loads(resp.read())
    return {s["tags"]["device"]: s["values"][0][1] for s in res["results"][0].get("series", [])}


def test_stack_up_serves_a_county_and_down_leaves_no_process(
        processes: Processes, tmp_path: Path) -> None:
    stack_dir = tmp_path / "county"
    lines = _airgrid(processes, "stack", "up", "--devices", "3", "--dir", str(stack_dir))
    up = json.loads(lines.strip().splitlines()[-1])
    records = stack_control.read_records(stack_dir)
    try:
        assert set(up) == {"mqtt_port", "influx_url", "influx_db", "metrics_url", "api_url",
                           "app_url", "workers", "collector_config", "registry", "devices",
                           "pids"}
        assert up["devices"] == ["dev-001", "dev-002", "dev-003"]
        # the command has returned; its processes still run, and are the recorded ones
        assert all(stack_control.is_ours(r) for r in records)
        assert {r.name: r.pid for r in records} == up["pids"]
        assert {"mosquitto", "influxd", "collector", "modem", "sim-dev-001",
                "edge-dev-003"} <= set(up["pids"])
        # readings of every device reach InfluxDB
        assert wait_for(lambda: len(_stored(up["influx_url"], up["influx_db"])) == 3, 40,
                        step=0.5), _stored(up["influx_url"], up["influx_db"])
        with urllib.request.urlopen(up["metrics_url"], timeout=5) as resp:
            assert b"airgrid_" in resp.read()
        # the alert API answers: refuses without the token, 404 for an unknown alert with it
        token = tomllib.loads(Path(up["collector_config"]).read_text())["alerting"]["ack"][
            "principals"][0]["token"]
        for headers, status in (({}, 401), ({"Authorization": f"Bearer {token}"}, 404)):
            req = urllib.request.Request(f"{up['api_url']}/alerts/999999/ack", data=b"{}",
                                         headers=headers, method="POST")
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=5)
            assert err.value.code == status
        # the registry places devices and lists grid worker and township officer
        registry = yaml.safe_load(Path(up["registry"]).read_text(encoding="utf-8"))
        for d in registry["devices"]:
            assert d["township"] and d["grid"] and -90 <= d["lat"] <= 90
            assert [c["phone"][:3] for c in d["contacts"]] == ["+86", "+86"]
        # the grid worker app: a printed worker's link signs them in to their own grid
        w = up["workers"][0]
        assert {"id", "grid", "township"} == set(w) and w["grid"] == registry["devices"][0][
            "grid"]
        link = worker_links.issue(Path(up["collector_config"]), w["id"], 60_000).url
        assert link.startswith(up["app_url"] + "?t=")
        me = urllib.request.Request(up["app_url"].replace("/app/", "/api/app/me"), headers={
            "Authorization": "Bearer " + link.split("t=", 1)[1]})
        with urllib.request.urlopen(me, timeout=5) as resp:
            assert json.loads(resp.read())["grid"] == w["grid"]
        status = json.loads(_airgrid(processes, "stack", "status", "--dir", str(stack_dir)))
        assert all(status["running"].values())
    finally:
        down = json.loads(_airgrid(processes, "stack", "down", "--dir", str(stack_dir)))
    assert set(down["stopped"]) == set(up["pids"]), down
    assert not any(stack_control.proc_start_time(r.pid) == r.start_time for r in records)


def test_down_leaves_a_process_that_reused_a_recorded_pid_alone(tmp_path: Path) -> None:
    me = stack_control.record("collector", os.getpid())
    stranger = stack_control.ProcessRecord("collector", me.pid, me.start_time + 1, me.cmdline)
    (tmp_path / stack_control.STATE_FILE).write_text(json.dumps(
        {"summary": {}, "processes": [stranger.__dict__]}))
    got = stack_control.down(tmp_path, timeout=1)
    assert got == {"stopped": {}, "killed_after_timeout": {}, "already_gone": ["collector"]}
    assert stack_control.is_ours(me)  # this test process was not signalled


def test_down_without_a_record_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(stack_control.StackControlError, match=str(tmp_path)):
        stack_control.down(tmp_path)
