"""A Pi that is right after one visit: install-service refuses to guess the device or the
broker, I2C without its driver or bus says so, the clock hold is said at once."""

from __future__ import annotations

import logging
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edge_agent import config as edge_config
from edge_agent import i2c_reader
from edge_agent.agent import EdgeAgent
from edge_agent.i2c_reader import I2cUnavailable, blinka_bus
from firmware_sim import pms5003_firmware
from firmware_sim.i2c_bus import FakeI2CBus

ROOT = Path(__file__).resolve().parents[2]


def _edge(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize(("given", "missing"), [
    ([], "--device ID and --broker-host NAME"),
    (["--device", "xh-1"], "--broker-host NAME"),
    (["--broker-host", "mqtt.xihe.example"], "--device ID"),
])
def test_install_service_will_not_guess_device_or_broker(tmp_path: Path, given: list[str],
                                                        missing: str) -> None:
    res = _edge("install-service", "--unit-dir", str(tmp_path / "u"), "--config",
                str(tmp_path / "edge.toml"), *given)
    assert res.returncode == 2 and f"pass {missing}" in res.stderr
    assert not (tmp_path / "edge.toml").exists() and not (tmp_path / "u").exists()


def test_install_service_writes_absolute_paths_and_checks_the_sensor(tmp_path: Path) -> None:
    res = _edge("install-service", "--unit-dir", "u", "--config", "etc/edge.toml",
                "--device", "xh-1", "--broker-host", "mqtt.xihe.example", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    unit = (tmp_path / "u" / "airgrid-edge.service").read_text()
    exec_start = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    python, _, _, _, _, config = exec_start.removeprefix("ExecStart=").split()
    assert Path(python).is_absolute() and config == str(tmp_path / "etc" / "edge.toml")
    # The sensor's RESET line: libgpiod opens /dev/gpiochipN under DevicePolicy=closed.
    assert "DeviceAllow=char-gpiochip rw" in unit and "DevicePolicy=closed" in unit
    cfg = edge_config.load(tmp_path / "etc" / "edge.toml")
    assert (cfg.device, cfg.broker.host) == ("xh-1", "mqtt.xihe.example")
    bad = _edge("install-service", "--unit-dir", "u2", "--config", "x.toml", "--device", "a",
                "--broker-host", "b", "--sensor", "pms9999", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice: 'pms9999'" in bad.stderr
    assert not (tmp_path / "u2").exists()


def test_uart_only_install_has_no_blinka() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert not any("adafruit" in d or "blinka" in d.lower() for d in extras["edge"])
    assert any(d.startswith("adafruit-circuitpython-pm25") for d in extras["edge-i2c"])


def test_read_i2c_on_a_machine_without_i2c_says_so() -> None:
    res = _edge("read", "--i2c", "--count", "1", "--timeout", "1")
    assert res.returncode == 1
    assert "no I2C on this machine" in res.stderr or "not installed" in res.stderr
    assert "Traceback" not in res.stderr


def test_i2c_without_the_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "board", None)  # import board -> ImportError
    with pytest.raises(I2cUnavailable) as err:
        blinka_bus()
    assert str(err.value).endswith(f"not installed: {i2c_reader.EXTRA_HINT}")
    assert i2c_reader.EXTRA_HINT == "pip install 'airgrid[edge,edge-i2c]'"


def test_an_agent_configured_for_pmsa003i_without_i2c_stops_with_the_reason(
        tmp_path: Path) -> None:
    cfg = tmp_path / "edge.toml"
    cfg.write_text('device = "i2c-1"\n[sensor]\nmodel = "pmsa003i"\n[broker]\n'
                   f'host = "127.0.0.1"\n[outbox]\npath = "{tmp_path / "o.db"}"\n')
    res = _edge("run", "--config", str(cfg))
    assert res.returncode == 2 and "sensor.model = 'pmsa003i'" in res.stderr
    assert "Traceback" not in res.stderr


def test_clock_hold_is_said_at_once_in_log_and_status(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('device = "i2c-1"\n[sensor]\nmodel = "pmsa003i"\n[broker]\n'
                    f'host = "127.0.0.1"\n[outbox]\npath = "{tmp_path / "o.db"}"\n'
                    "[clock]\nhold_unsynced_s = 600\n")
    synced = [False]
    bus = FakeI2CBus(values=[pms5003_firmware.values_for(30.0)])
    agent = EdgeAgent(edge_config.load(path), i2c_bus=bus, clock=lambda: synced[0])
    try:
        with caplog.at_level(logging.INFO, logger="edge_agent.agent"):
            status = agent.status()
            agent.status()
            assert 590 < status.clock_hold_s <= 600
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "holding readings for up to" in warnings[0]
            synced[0] = True
            agent.check_clock()
            assert agent.status().clock_hold_s == 0.0
            assert any("clock synchronised" in r.getMessage() for r in caplog.records)
    finally:
        agent.outbox.close()
