"""`airgrid-edge read | doctor | install-service` as a technician runs them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airgrid.wire import COUNT_FIELDS, ENV_FIELDS, PM_FIELDS
from edge_agent import config as edge_config
from edge_agent import doctor
from orchestration.services import Mosquitto
from tests.support.integration import process_fixture
from tests.support.wait import wait_for

WIRE_FIELDS = frozenset(PM_FIELDS + COUNT_FIELDS + ENV_FIELDS)


def _sim(tmp_path: Path, model: str, *args: str) -> Iterator[Path]:
    link = tmp_path / f"tty-{model}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_sim.cli", model, "--link", str(link),
         "--frame-period", "0.05", "--seconds", "60", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(link.exists, 10), f"the {model} simulator never made {link}"
        yield link
    finally:
        proc.terminate()
        proc.wait(10)


@process_fixture
def pms_link(tmp_path: Path) -> Iterator[Path]:
    # warm-up long enough to outlast a slow interpreter start on a loaded machine
    yield from _sim(tmp_path, "pms5003", "--warmup", "3", "--garbage", "0.3",
                    "--bad-checksum", "0.2", "--acks", "0.3", "--trap42", "0.3")


@process_fixture
def sds_link(tmp_path: Path) -> Iterator[Path]:
    yield from _sim(tmp_path, "sds011", "--garbage", "0.2", "--acks", "0.3")


def _edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_read_json_prints_only_valid_readings_and_a_summary(pms_link: Path) -> None:
    res = _edge("read", "--port", str(pms_link), "--count", "20", "--json")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(lines) == 20
    for obj in lines:
        assert set(obj) <= WIRE_FIELDS and obj["pm2_5"] > 0 and obj["n0_3"] > 100
        assert obj["pm1_0"] <= obj["pm2_5"] <= obj["pm10"]
    assert "skipped" in res.stderr and "warm-up frames" in res.stderr
    assert "command replies" in res.stderr


def test_read_sds011_in_query_mode(sds_link: Path) -> None:
    res = _edge("read", "--port", str(sds_link), "--sensor", "sds011", "--polled",
                "--count", "3", "--json")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(lines) == 3 and all(set(x) == {"pm2_5", "pm10"} for x in lines)


def test_read_from_a_missing_port_says_so() -> None:
    res = _edge("read", "--port", "/nonexistent/tty", "--count", "1", "--timeout", "1")
    assert res.returncode == 1 and "cannot read the sensor" in res.stderr
    assert "Traceback" not in res.stderr


def _config(tmp_path: Path, port: Path, broker_port: int, extra: str = "") -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(
        f'device = "doc-1"\n[sensor]\nport = "{port}"\n[outbox]\n'
        f'path = "{tmp_path / "o.db"}"\n[broker]\nhost = "127.0.0.1"\nport = {broker_port}\n'
        f'{extra}'
    )
    return path


def test_doctor_all_ok_against_a_real_broker_and_sensor(
    tmp_path: Path, pms_link: Path, mosquitto: Mosquitto
) -> None:
    res = _edge("doctor", "--config", str(_config(tmp_path, pms_link, mosquitto.port)))
    lines = res.stdout.splitlines()
    verdicts = {line.split()[1].rstrip(":"): line.split()[0] for line in lines[:-1]}
    assert verdicts["config"] == verdicts["serial"] == verdicts["sensor"] == "OK", res.stdout
    assert verdicts["broker"] == "OK" and verdicts["disk"] == "OK"
    assert lines[-1] == "verdict: READY" and res.returncode == 0


def test_doctor_names_what_is_wrong(tmp_path: Path, mosquitto: Mosquitto) -> None:
    cfg = _config(tmp_path, tmp_path / "no-such-tty", mosquitto.port + 1)
    checks = {c.what: c for c in doctor.run(cfg, sensor_seconds=1)}
    assert checks["serial port"].verdict == "FAIL" and "does not exist" in checks[
        "serial port"].detail
    assert checks["broker"].verdict == "FAIL"
    bad = tmp_path / "bad.toml"
    bad.write_text('device = "d"\n[broker]\nport = "x"\n')
    (only,) = doctor.run(bad)
    assert only.verdict == "FAIL" and "broker.port" in only.detail


def test_doctor_spots_the_login_console(tmp_path: Path, pms_link: Path) -> None:
    real = os.path.realpath(pms_link)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f"coherent_pool=1M console={real.removeprefix('/dev/')},115200 "
                       "console=tty1 root=/dev/mmcblk0p2\n")
    check = doctor.check_port(str(pms_link), cmdline)
    assert check.verdict == "FAIL" and "login console" in check.detail


def test_install_service_writes_unit_and_private_config(tmp_path: Path) -> None:
    cfg = tmp_path / "etc" / "edge.toml"
    res = _edge("install-service", "--unit-dir", str(tmp_path / "units"), "--config",
                str(cfg), "--device", "pi-0042", "--sensor", "sds011",
                "--broker-host", "mqtt.xihe.example")
    assert res.returncode == 0, res.stderr
    unit = (tmp_path / "units" / "airgrid-edge.service").read_text()
    for line in ("Type=notify", "WatchdogSec=60", "Restart=always", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", f"--config {cfg}"):
        assert line in unit
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    loaded = edge_config.load(cfg)
    assert loaded.device == "pi-0042" and loaded.sensor.model == "sds011"
    cfg.write_text(cfg.read_text() + "# edited\n")
    res = _edge("install-service", "--unit-dir", str(tmp_path / "units"), "--config", str(cfg))
    assert "kept existing" in res.stdout and cfg.read_text().endswith("# edited\n")


def test_read_i2c_prints_readings_and_counts_bad_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import edge_agent.cli as cli
    from firmware_sim import pms5003_firmware
    from firmware_sim.i2c_bus import FakeI2CBus

    monkeypatch.setattr(cli.time, "sleep", lambda s: None)  # no real bus to wait for
    zero = pms5003_firmware.PmsValues(*([0] * 12))
    bus = FakeI2CBus(values=[zero, *(pms5003_firmware.values_for(v) for v in (20, 21, 22))],
                     bad_checksum_every=3)
    out = io.StringIO()
    printed, skipped = cli.read_i2c(bus, 0x12, 4, 5.0, True, out=out)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert printed == 4 and len(lines) == 4 and all(20 <= x["pm2_5"] <= 22 for x in lines)
    assert skipped["warm-up frames"] >= 1 and skipped["checksum errors"] >= 1
