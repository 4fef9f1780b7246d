"""`airgrid-edge doctor`: is this Pi ready? One verdict per line, for a technician."""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from airgrid.config import ConfigError
from edge_agent import config as edge_config
from edge_agent.clock import clock_synced
from edge_agent.config import BrokerSettings
from edge_agent.drivers import SERIAL_PROTOCOLS

#: Below this much free space the outbox cannot ride out a long outage.
MIN_FREE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Check:
    verdict: str  # OK, WARN, FAIL
    what: str
    detail: str

    def line(self) -> str:
        return f"{self.verdict:<4}  {self.what}: {self.detail}"


def _console_devices(cmdline: str) -> set[str]:
    """Devices the kernel puts a login console on (`console=ttyS0,115200`)."""
    out = set()
    for word in cmdline.split():
        if word.startswith("console="):
            name = word.split("=", 1)[1].split(",", 1)[0]
            out.add(name)
    return out


def check_port(port: str, cmdline_path: Path = Path("/proc/cmdline")) -> Check:
    path = Path(port)
    if not path.exists():
        return Check("FAIL", "serial port", f"{port} does not exist (UART enabled? "
                     "enable_uart=1 in /boot/firmware/config.txt; USB adapter plugged in?)")
    real = os.path.realpath(port)
    if not os.access(real, os.R_OK | os.W_OK):
        return Check("FAIL", "serial port", f"{port} ({real}) not readable and writable by "
                     "this user (add it to the 'dialout' group)")
    try:
        consoles = _console_devices(cmdline_path.read_text())
    except OSError:
        consoles = set()
    for name in consoles:
        if os.path.realpath(f"/dev/{name}") == real:
            return Check("FAIL", "serial port", f"{port} is the login console "
                         f"(console={name} in {cmdline_path}): disable the serial console "
                         "in raspi-config, Interface Options, Serial Port")
    return Check("OK", "serial port", f"{port} ({real}) present and readable")


def check_sensor(port: str, model: str, polled: bool, seconds: float = 5.0) -> Check:
    import serial

    protocol = SERIAL_PROTOCOLS[model]
    decoder = protocol.new_decoder()
    frames = replies = 0
    try:
        with serial.Serial(port, protocol.baudrate, timeout=0.2) as s:
            s.write(protocol.wake + protocol.configure(polled))
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not frames:
                if polled:
                    s.write(protocol.poll)
                for item in decoder.feed(s.read(64)):
                    if protocol.is_measurement(item):
                        frames += 1
                    else:
                        replies += 1
    except (serial.SerialException, OSError) as exc:
        return Check("FAIL", "sensor", f"cannot use {port}: {exc}")
    errors = dict(decoder.errors)
    if frames:
        return Check("OK", "sensor", f"{model} answers on {port}"
                     + (f" (line noise: {errors})" if errors else ""))
    if replies or errors:
        return Check("FAIL", "sensor", f"bytes arrive on {port} but no {model} reading in "
                     f"{seconds:.0f} s (replies {replies}, errors {errors}): right model? "
                     "TX/RX swapped?")
    return Check("FAIL", "sensor", f"nothing from {port} in {seconds:.0f} s: check 5 V power, "
                 "that sensor TX goes to Pi RX (GPIO 15) and the fan turns")


def check_broker(b: BrokerSettings, device: str, seconds: float = 5.0) -> Check:
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    result: dict[str, str] = {}
    done = threading.Event()
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                    client_id=f"airgrid-doctor-{device}", protocol=mqtt.MQTTv5)
    if b.username:
        c.username_pw_set(b.username, b.password)
    if b.ca_file:
        try:
            c.tls_set(ca_certs=b.ca_file, certfile=b.cert_file, keyfile=b.key_file,
                      cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        except (OSError, ssl.SSLError, ValueError) as exc:
            return Check("FAIL", "broker", f"TLS files: {exc}")

    def on_connect(client: mqtt.Client, u: object, f: object, reason: object,
                   p: object) -> None:
        result["reason"] = str(reason)
        result["ok"] = "" if getattr(reason, "is_failure", True) else "yes"
        done.set()

    c.on_connect = on_connect
    tls = "TLS" if b.ca_file else "plain"
    where = f"{b.host}:{b.port} ({tls}{', user ' + b.username if b.username else ''})"
    try:
        c.connect(b.host, b.port, keepalive=10)
    except (OSError, ssl.SSLError) as exc:
        return Check("FAIL", "broker", f"cannot reach {where}: {exc}")
    c.loop_start()
    done.wait(seconds)
    c.disconnect()
    c.loop_stop()
    if not done.is_set():
        return Check("FAIL", "broker", f"no answer from {where} in {seconds:.0f} s")
    if not result.get("ok"):
        return Check("FAIL", "broker", f"{where} refused: {result['reason']}")
    return Check("OK", "broker", f"connected to {where}")


def check_clock(trust: bool) -> Check:
    if clock_synced():
        return Check("OK", "clock", "synchronised (NTP)")
    if trust:
        return Check("WARN", "clock", "not NTP-synchronised, trusted by config")
    return Check("WARN", "clock", "not synchronised yet: readings are held, then restamped "
                 "(check network and `timedatectl`)")


def check_disk(outbox: Path, max_bytes: int) -> Check:
    d = outbox.parent
    while not d.exists() and d != d.parent:
        d = d.parent
    free = shutil.disk_usage(d).free
    need = max(MIN_FREE_BYTES, max_bytes)
    mb = free / 1024 / 1024
    if free < need:
        return Check("FAIL", "disk", f"{mb:.0f} MB free at {d}, need {need / 1024 / 1024:.0f}")
    return Check("OK", "disk", f"{mb:.0f} MB free for the outbox at {d}")


def run(config_path: Path, sensor_seconds: float = 5.0) -> list[Check]:
    try:
        cfg = edge_config.load(config_path)
    except ConfigError as exc:
        return [Check("FAIL", "config", str(exc))]
    checks = [Check("OK", "config", f"{config_path} valid (device {cfg.device}, "
                    f"{cfg.sensor.model})")]
    if cfg.sensor.model in SERIAL_PROTOCOLS:
        port = check_port(cfg.sensor.port)
        checks.append(port)
        if port.verdict == "OK":
            checks.append(check_sensor(cfg.sensor.port, cfg.sensor.model, cfg.sensor.polled,
                                       sensor_seconds))
    checks.append(check_broker(cfg.broker, cfg.device))
    checks.append(check_clock(cfg.clock.trust_system_clock))
    checks.append(check_disk(cfg.outbox.path, cfg.outbox.max_bytes))
    return checks
