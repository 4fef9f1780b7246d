"""`airgrid-edge install-service`: a systemd unit and a config file a technician can edit."""

from __future__ import annotations

import os
import sys
from pathlib import Path

UNIT_NAME = "airgrid-edge.service"

UNIT = """\
[Unit]
Description=airgrid edge agent (PM2.5 sensor to MQTT)
Documentation=man:systemd.service(5)
After=network-online.target time-sync.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={python} -m edge_agent.cli run --config {config}
Restart=always
RestartSec=5
# The agent pings the watchdog at least once a second; a hung agent is restarted.
WatchdogSec=60
TimeoutStopSec=20
User={user}
Group={user}
SupplementaryGroups=dialout i2c gpio
StateDirectory=airgrid
StateDirectoryMode=0700
# Hardening: the agent needs its state dir, the sensor device and the network, nothing else.
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
CapabilityBoundingSet=
DevicePolicy=closed
DeviceAllow=char-ttyS rw
DeviceAllow=char-ttyAMA rw
DeviceAllow=char-ttyUSB rw
DeviceAllow=char-i2c rw
# The sensor's RESET/SET line (edge_agent/gpio.py: libgpiod's gpioset on /dev/gpiochipN).
DeviceAllow=char-gpiochip rw
MemoryMax=96M

[Install]
WantedBy=multi-user.target
"""

CONFIG = """\
# airgrid edge agent. Check it with: airgrid-edge doctor --config {config}
device = "{device}"

[sensor]
model = "{sensor}"          # pms5003, pms7003, pmsa003, pms5003t, sds011, pmsa003i
port = "{port}"             # the Pi's UART is /dev/serial0
warmup_s = 30.0             # datasheet: readings are stable ~30 s after wake
mode = "active"             # or "polled" (passive / query mode)

[sampling]
interval_s = 60.0

[outbox]
path = "/var/lib/airgrid/outbox.db"
max_rows = 1000000          # ~1.9 years at one reading a minute
commit_interval_s = 0.0     # 0 = every reading committed at once (no loss on power cut)

[broker]
host = "{broker_host}"
port = {broker_port}
# username = "{device}"
# password = "..."
# ca_file = "/etc/airgrid/ca.crt"      # TLS; add cert_file/key_file for mutual TLS

[clock]
trust_system_clock = false  # true only with a hardware RTC
"""


def install(
    *, unit_dir: Path, config: Path, device: str, sensor: str, port: str,
    broker_host: str, broker_port: int, user: str = "airgrid", force: bool = False,
) -> list[str]:
    """Write the unit and (unless present) the config; returns what was done."""
    done: list[str] = []
    unit_dir.mkdir(parents=True, exist_ok=True)
    unit_path = unit_dir / UNIT_NAME
    unit_path.write_text(UNIT.format(python=sys.executable, config=config, user=user))
    done.append(f"wrote {unit_path}")
    if config.exists() and not force:
        done.append(f"kept existing {config} (use --force to overwrite)")
    else:
        config.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 from the start: it may hold the broker password.
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(CONFIG.format(config=config, device=device, sensor=sensor, port=port,
                                    broker_host=broker_host, broker_port=broker_port))
        os.chmod(config, 0o600)
        done.append(f"wrote {config} (mode 0600)")
    return done
