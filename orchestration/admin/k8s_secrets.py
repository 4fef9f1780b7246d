"""`airgrid-admin k8s-secrets`: the admin home's CA, broker config and accounts as
Kubernetes Secret manifests for deploy/k8s (the overlays list these files as resources).

What the admin home holds (broker config, CA, server key, account passwords) is copied
each run. The InfluxDB and Grafana passwords exist nowhere else: they are made once and
kept on later runs, so re-running after `device add` changes nothing but the broker files.
"""

from __future__ import annotations

import base64
import json
import secrets
import tomllib
from pathlib import Path

from orchestration.admin import broker_config
from orchestration.admin.errors import AdminError
from orchestration.admin.files import write_file
from orchestration.admin.home import AdminHome

MOSQUITTO_CONFIG = "mosquitto-config"
COLLECTOR_BROKER = "collector-broker"
INFLUXDB_CREDENTIALS = "influxdb-credentials"
GRAFANA_ADMIN = "grafana-admin"
RABBITMQ_TLS = "rabbitmq-tls"


def secret_manifest(name: str, namespace: str, files: dict[str, bytes],
                    secret_type: str = "Opaque") -> str:
    """A v1 Secret with `files` as its data (base64). JSON, which is YAML too."""
    doc = {
        "apiVersion": "v1", "kind": "Secret", "type": secret_type,
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "airgrid"}},
        "data": {k: base64.b64encode(v).decode() for k, v in sorted(files.items())},
    }
    return json.dumps(doc, indent=2) + "\n"


def _existing(path: Path) -> dict[str, bytes]:
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    return {k: base64.b64decode(v) for k, v in doc.get("data", {}).items()}


def _account_password(home: AdminHome, name: str) -> bytes:
    path = home.root / "accounts" / f"{name}.toml"
    try:
        return str(tomllib.loads(path.read_text())["broker"]["password"]).encode()
    except FileNotFoundError as exc:
        raise AdminError(f"no account {name!r}: run `airgrid-admin account add {name} "
                         f"--role collector` first") from exc


def write_secrets(home: AdminHome, out: Path, broker_dir: Path | None = None,
                  namespace: str = "airgrid", collector_account: str = "collector"
                  ) -> list[Path]:
    """Write the Secret manifests into `out` (0600 each); returns the files written."""
    reg = home.registry()
    bdir = broker_dir or (Path(reg.broker.config_dir) if reg.broker.config_dir else None)
    if bdir is None or not (bdir / broker_config.CONF).is_file():
        raise AdminError("no broker config: run `airgrid-admin broker-config --out DIR "
                         "--config-path /mosquitto/config --data-dir /mosquitto/data` first, "
                         "or pass --broker-dir DIR")
    broker_files = {p.name: p.read_bytes() for p in sorted(bdir.iterdir())
                    if p.is_file() and not p.name.startswith(".")}
    written: list[Path] = []

    def put(name: str, files: dict[str, bytes], secret_type: str = "Opaque") -> None:
        path = out / f"{name}.yaml"
        write_file(path, secret_manifest(name, namespace, files, secret_type))
        written.append(path)

    put(MOSQUITTO_CONFIG, broker_files)
    put(COLLECTOR_BROKER, {"password": _account_password(home, collector_account)})
    # The province's RabbitMQ serves devices with the same server certificate and CA.
    put(RABBITMQ_TLS, {"tls.crt": broker_files[broker_config.SERVER_CERT],
                       "tls.key": broker_files[broker_config.SERVER_KEY],
                       "ca.crt": broker_files[broker_config.CA_CERT]}, "kubernetes.io/tls")
    influx = _existing(out / f"{INFLUXDB_CREDENTIALS}.yaml")
    for key in ("admin_password", "admin_token", "collector_password", "grafana_password"):
        influx.setdefault(key, secrets.token_urlsafe(24).encode())
    put(INFLUXDB_CREDENTIALS, influx)
    grafana = _existing(out / f"{GRAFANA_ADMIN}.yaml")
    grafana.setdefault("admin_password", secrets.token_urlsafe(18).encode())
    put(GRAFANA_ADMIN, grafana)
    return written
