"""A device's bundle: its edge config, the CA certificate and its own key and certificate.

Everything is written with mode 0600: the key and a password are secrets, and the edge
agent refuses a config holding a secret that others can read. The config names the files
where the bundle will be installed on the Pi (`install_dir`, default /etc/airgrid).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from orchestration.admin.files import write_file

EDGE_CONFIG = "edge.toml"
CA_CERT = "ca.crt"
DEVICE_CERT = "device.crt"
DEVICE_KEY = "device.key"
DEFAULT_INSTALL_DIR = "/etc/airgrid"


@dataclass(frozen=True)
class BundleSpec:
    device: str
    broker_host: str
    broker_port: int
    install_dir: str = DEFAULT_INSTALL_DIR
    sensor_port: str = "/dev/serial0"
    outbox_path: str = "/var/lib/airgrid/outbox.db"
    prefix: str = "airgrid"


def _q(value: str) -> str:
    # A JSON string is a valid TOML basic string for the characters ids and paths use.
    return json.dumps(value)


def edge_toml(spec: BundleSpec, *, tls: bool, client_cert: bool,
              password: str | None = None) -> str:
    d = spec.install_dir.rstrip("/")
    lines = [
        f"# airgrid edge agent for device {spec.device}, written by `airgrid-admin device add`.",
        "# Holds credentials: keep it mode 0600 (the agent refuses it otherwise).",
        f"device = {_q(spec.device)}",
        "",
        "[sensor]",
        f"port = {_q(spec.sensor_port)}",
        "",
        "[outbox]",
        f"path = {_q(spec.outbox_path)}",
        "",
        "[broker]",
        f"host = {_q(spec.broker_host)}",
        f"port = {spec.broker_port}",
        f"prefix = {_q(spec.prefix)}",
    ]
    if tls:
        lines.append(f"ca_file = {_q(d + '/' + CA_CERT)}")
    if client_cert:
        lines += [f"cert_file = {_q(d + '/' + DEVICE_CERT)}",
                  f"key_file = {_q(d + '/' + DEVICE_KEY)}"]
    if password is not None:
        lines += [f"username = {_q(spec.device)}", f"password = {_q(password)}"]
    return "\n".join(lines) + "\n"


def write_bundle(out: Path, spec: BundleSpec, ca_pem: bytes, *, key_pem: bytes | None = None,
                 cert_pem: bytes | None = None, password: str | None = None,
                 tls: bool = True) -> list[Path]:
    """Write the bundle into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    files = {EDGE_CONFIG: edge_toml(spec, tls=tls, client_cert=key_pem is not None,
                                    password=password).encode()}
    if tls:
        files[CA_CERT] = ca_pem
    if key_pem is not None and cert_pem is not None:
        files[DEVICE_KEY] = key_pem
        files[DEVICE_CERT] = cert_pem
    written = []
    for name, data in files.items():
        write_file(out / name, data)
        written.append(out / name)
    return written
