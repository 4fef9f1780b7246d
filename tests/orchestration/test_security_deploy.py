"""Deployment files agree with the code: compose mounts, the collector unit, systemd
notifications from the real collector, the cloud-init first boot."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from airgrid import sd_notify
from orchestration.admin.bundle import DEVICE_KEY, EDGE_CONFIG
from orchestration.admin.cli import main as admin_main
from orchestration.admin.files import write_file
from orchestration.services import InfluxDB, Mosquitto

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _compose() -> dict[str, object]:
    doc: dict[str, object] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


def test_compose_runs_mosquitto_on_the_generated_config(tmp_path: Path) -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    assert sorted(services) == ["collector", "grafana", "influxdb", "mosquitto", "report"]
    mq = services["mosquitto"]
    mount = next(v for v in mq["volumes"] if v.startswith("./broker:"))
    config_path = mount.split(":")[1]
    assert mount.endswith(":ro")
    data_mount = next(v for v in mq["volumes"] if v.startswith("mosquitto-data:"))
    data_dir = data_mount.split(":")[1]
    # Generate as docs/deployment.md says; every file the config names must be one that
    # broker-config wrote into the mounted directory.
    home, out = tmp_path / "home", tmp_path / "broker"
    assert admin_main(["--home", str(home), "ca", "init",
                       "--broker-host", "mqtt.xihe.example"]) == 0
    assert admin_main(["--home", str(home), "broker-config", "--out", str(out),
                       "--config-path", config_path, "--data-dir", data_dir]) == 0
    assert admin_main(["--home", str(home), "account", "add", "collector",
                       "--role", "collector"]) == 0
    conf = (out / "mosquitto.conf").read_text()
    assert mq["command"][-1] == f"{config_path}/mosquitto.conf"
    named = re.findall(rf"^\w+ {re.escape(config_path)}/(\S+)$", conf, re.MULTILINE)
    assert len(named) >= 7
    for name in named:
        assert (out / name).is_file(), name
    assert f"persistence_location {data_dir}/" in conf
    listeners = dict(re.findall(r"^listener (\d+) (\S+)$", conf, re.MULTILINE))
    assert listeners == {"8883": "0.0.0.0", "1883": "127.0.0.1"}
    # Only the device listener is published; the password listener is the container's
    # loopback, which the collector shares, and takes the address the collector is given.
    assert [int(p.rsplit(":", 2)[-2]) for p in mq["ports"]] == [8883]
    assert services["collector"]["network_mode"] == "service:mosquitto"
    example = (DEPLOY / "collector" / "collector.toml.example").read_text()
    assert 'host = "127.0.0.1"' in example.split("[broker]")[1].split("[")[0]


def test_compose_keeps_secrets_out_and_locks_the_collector_down() -> None:
    doc = _compose()
    services = doc["services"]
    assert isinstance(services, dict)
    for name, svc in services.items():
        for key in svc.get("environment") or {}:
            if re.search(r"PASSWORD|TOKEN|SECRET", key) and not key.endswith("__FILE"):
                pytest.fail(f"{name}: {key} given inline; use env_file or secrets")
        env_file = svc.get("env_file")
        if env_file:
            assert (DEPLOY / f"{env_file}.example").is_file(), env_file
    c = services["collector"]
    assert c["read_only"] is True and c["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in c["security_opt"]
    assert (DEPLOY / "collector" / "collector.toml.example").is_file()
    # Everything git must not carry is ignored.
    ignored = (DEPLOY / ".gitignore").read_text().split()
    assert {"broker/", "collector/collector.toml", "secrets/*"} <= set(ignored)


def test_the_compose_collector_writes_only_into_its_state_volume() -> None:
    """/etc/airgrid is a read-only bind mount and the root file system is read-only: the
    spool, the checkpoint state (with the quarantine and engine files beside it) and the
    alert store must be in the collector-state volume. Before, the example left them at
    their defaults beside the config, where the collector cannot create them."""
    import tomllib

    from collector.config import from_dict

    collector = _compose()["services"]["collector"]  # type: ignore[index]
    mounts = dict(v.split(":")[:2][::-1] for v in collector["volumes"])
    state_dir = Path(next(m for m, src in mounts.items() if src == "collector-state"))
    config = Path(collector["command"][-1])
    assert mounts[str(config.parent)] == "./collector"  # the read-only one
    example = (DEPLOY / "collector" / "collector.toml.example").read_text()
    cfg = from_dict(tomllib.loads(example), config)
    written = {"spool": cfg.spool.dir, "state": cfg.state.file,
               "alerting": cfg.alerting.state_db}
    assert {k: p for k, p in written.items() if not p.is_relative_to(state_dir)} == {}


def test_grafana_gets_every_variable_its_provisioning_uses() -> None:
    prov = ROOT / "grafana" / "provisioning"
    if not prov.is_dir():
        pytest.skip("grafana/provisioning/ not present in this checkout")
    used = set()
    for f in prov.rglob("*.yaml"):
        text = "\n".join(line for line in f.read_text().splitlines()
                         if not line.lstrip().startswith("#"))
        used |= set(re.findall(r"\$\{(\w+)\}", text))
    g = _compose()["services"]["grafana"]  # type: ignore[index]
    given = set(g.get("environment", {}))
    env_file = DEPLOY / f"{g['env_file']}.example"
    given |= {line.split("=", 1)[0] for line in env_file.read_text().splitlines()
              if "=" in line and not line.startswith("#")}
    assert used <= given, used - given


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(DEPLOY / "systemd" / "airgrid-collector.service")
    return cp


def test_collector_unit_is_hardened_and_writes_only_its_state() -> None:
    s = _unit()["Service"]
    assert s["Type"] == "notify" and int(s["WatchdogSec"]) > 0
    assert s["NoNewPrivileges"] == "yes" and s["ProtectSystem"] == "strict"
    assert s["ReadWritePaths"].split() == ["/var/lib/airgrid"]
    assert s["ProtectHome"] == "yes" and s["PrivateTmp"] == "yes"
    assert s["User"] == "airgrid"
    assert "airgrid-collector run --config /etc/airgrid/collector.toml" in s["ExecStart"]


def test_systemd_accepts_the_collector_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "airgrid-collector").exists():
        pytest.skip("airgrid-collector not installed beside this interpreter")
    unit = tmp_path / "airgrid-collector.service"
    unit.write_text((DEPLOY / "systemd" / "airgrid-collector.service").read_text()
                    .replace("/opt/airgrid/venv/bin", str(venv_bin)))
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run([analyze, "security", "--offline=true", str(unit)],
                              capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert m is not None, security.stdout[-500:]
    assert float(m.group(1)) <= 2.0  # systemd rates <= 2.0 as "OK"


# --- systemd notify protocol --------------------------------------------------------


def _notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    return sock, path


def _receive(sock: socket.socket, seconds: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return got


def test_watchdog_is_petted_only_while_healthy(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = _notify_socket(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "300000")  # petted every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    healthy = threading.Event()
    stop = threading.Event()
    assert sd_notify.start_watchdog(healthy.is_set, stop) is not None
    try:
        assert _receive(sock, 0.6) == []
        healthy.set()
        assert _receive(sock, 0.6).count("WATCHDOG=1") >= 3
    finally:
        stop.set()
        sock.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert sd_notify.notify("READY=1") is False


def test_collector_tells_systemd_it_is_ready_and_alive(
    tmp_path: Path, mosquitto: Mosquitto, shared_influxdb: InfluxDB, influx_db_name: str,
) -> None:
    sock, path = _notify_socket(tmp_path)
    config = tmp_path / "collector.toml"
    write_file(config, f"[broker]\nport = {mosquitto.port}\nclient_id = \"c-{os.getpid()}\"\n"
               f"[influx]\nurl = \"{shared_influxdb.url}\"\ndatabase = \"{influx_db_name}\"\n")
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-m", "collector.cli", "run", "--config",
                             str(config)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        got = _receive(sock, 5.0)
    finally:
        proc.terminate()
        proc.wait(15)
        sock.close()
    assert "READY=1" in got
    assert got.count("WATCHDOG=1") >= 3


# --- cloud-init ---------------------------------------------------------------------


def test_cloud_init_installs_the_bundle_privately_and_starts_the_agent() -> None:
    text = (DEPLOY / "cloud-init" / "user-data").read_text()
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    commands = [" ".join(c) if isinstance(c, list) else c for c in doc["runcmd"]]
    install = next(c for c in commands if "/boot/firmware/airgrid/" in c and "install" in c)
    assert "-m 0600" in install and "/etc/airgrid/" in install
    removal = next(c for c in commands if c.startswith("sh -c rm"))
    assert DEVICE_KEY in removal and EDGE_CONFIG in removal  # no secret left on FAT
    assert any("install-service --config /etc/airgrid/edge.toml" in c for c in commands)
    assert any("enable airgrid-edge.service" in c for c in commands)
    doctor_unit = next(f["content"] for f in doc["write_files"]
                       if f["path"].endswith("airgrid-first-doctor.service"))
    assert "doctor --config /etc/airgrid/edge.toml > /boot/firmware/airgrid-doctor.txt" in (
        doctor_unit)
    assert doc["ssh_pwauth"] is False


def test_cloud_init_reboots_once_when_uart_or_i2c_changed_before_the_doctor_verdict() -> None:
    doc = yaml.safe_load((DEPLOY / "cloud-init" / "user-data").read_text())
    commands = [" ".join(c) if isinstance(c, list) else c for c in doc["runcmd"]]
    at = {what: next(i for i, c in enumerate(commands) if what in c) for what in (
        "sha256sum >", "do_serial_hw 0", "do_serial_cons 1", "do_i2c 0",
        "touch /run/airgrid-reboot-needed", "enable airgrid-edge.service",
        "test -f /run/airgrid-reboot-needed ||")}
    # The boot files are fingerprinted before raspi-config and compared after it.
    assert at["sha256sum >"] < at["do_serial_hw 0"] < at["do_i2c 0"] < at[
        "touch /run/airgrid-reboot-needed"] < at["enable airgrid-edge.service"]
    # Without a change: start now. With one: cloud-init's power_state reboots, and the
    # enabled units (agent, then the one-shot doctor) run after that boot.
    assert "systemctl start airgrid-edge.service airgrid-first-doctor.service" in commands[
        at["test -f /run/airgrid-reboot-needed ||"]]
    assert not any("doctor --config" in c for c in commands)  # never before the reboot
    assert doc["power_state"]["mode"] == "reboot"
    assert doc["power_state"]["condition"] == ["test", "-f", "/run/airgrid-reboot-needed"]
    unit = next(f["content"] for f in doc["write_files"]
                if f["path"] == "/etc/systemd/system/airgrid-first-doctor.service")
    assert "After=airgrid-edge.service" in unit and "Type=oneshot" in unit
    assert "disable airgrid-first-doctor.service" in unit  # once only


def test_systemd_accepts_the_report_timer_at_seven_beijing_time(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "airgrid-report").exists():
        pytest.skip("airgrid-report not installed beside this interpreter")
    service = tmp_path / "airgrid-report.service"
    service.write_text((DEPLOY / "systemd" / "airgrid-report.service").read_text()
                       .replace("/opt/airgrid/venv/bin", str(venv_bin)))
    timer = tmp_path / "airgrid-report.timer"
    timer.write_text((DEPLOY / "systemd" / "airgrid-report.timer").read_text())
    verify = subprocess.run([analyze, "verify", str(service), str(timer)],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr
    spec = re.search(r"^OnCalendar=(.+)$", timer.read_text(), re.M)
    assert spec is not None
    cal = subprocess.run([analyze, "calendar", "--iterations=2", spec.group(1)],
                         capture_output=True, text=True, timeout=60)
    assert cal.returncode == 0, cal.stderr
    # 07:00 in Shanghai is 23:00 UTC, every day
    elapses = re.findall(r"\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d) UTC", cal.stdout)
    assert elapses == ["23:00:00", "23:00:00"], cal.stdout
    security = subprocess.run([analyze, "security", "--offline=true", str(service)],
                              capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert m is not None and float(m.group(1)) <= 2.0, security.stdout[-500:]


def test_compose_runs_the_report_from_the_collector_image_read_only() -> None:
    services = _compose()["services"]
    r = services["report"]  # type: ignore[index]
    assert r["image"] == services["collector"]["image"]  # type: ignore[index]
    assert r["read_only"] is True and r["cap_drop"] == ["ALL"]
    assert "airgrid-report deliver --config /etc/airgrid/report.toml" in r["command"][0]
    assert "./collector:/etc/airgrid:ro" in r["volumes"]
