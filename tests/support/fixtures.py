"""Fixtures that run the real services: Mosquitto and Debian's InfluxDB 1.x, and the
secured broker of `airgrid-admin broker-config`. Registered by tests/conftest.py.

Each starts as a child process with a generated config in a temp dir, on a free loopback
port, and is stopped by PID. Function-scoped instances may be restarted mid-test with
`.restart()` / `.stop()` / `.start()` (fault tests); the session-scoped InfluxDB is shared
by tests that only need somewhere to write (each uses its own database).
"""

from __future__ import annotations

import itertools
import json
import socket
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestration.admin.broker_config import Listeners
from orchestration.admin.home import AdminHome
from orchestration.services import (
    InfluxDB,
    Mosquitto,
    ServiceError,
    _find_binary,
    _Process,
    free_port,
)
from tests.support.integration import process_fixture
from tests.support.wait import wait_for

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
_db_counter = itertools.count()


@process_fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@process_fixture
def influxdb(tmp_path: Path) -> Iterator[InfluxDB]:
    """A private InfluxDB (restartable)."""
    influx = InfluxDB(tmp_path / "influxdb")
    influx.start()
    yield influx
    influx.stop()


@process_fixture(scope="session")
def shared_influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    influx = InfluxDB(tmp_path_factory.mktemp("influxdb-shared"))
    influx.start()
    yield influx
    influx.stop()


@pytest.fixture
def influx_db_name(shared_influxdb: InfluxDB) -> str:
    """A fresh database in the shared InfluxDB."""
    name = f"t{next(_db_counter)}_{uuid.uuid4().hex[:6]}"
    shared_influxdb.create_database(name)
    return name


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the project; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


# --- VictoriaMetrics: a server of InfluxDB's v2 write API -------------------------------


class VictoriaMetrics(_Process):
    """Debian's victoria-metrics: accepts InfluxDB line protocol on /api/v2/write."""

    name = "victoria-metrics"

    def _command(self) -> list[str]:
        binary = _find_binary("victoria-metrics", "/usr/bin/victoria-metrics")
        return [binary, f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.workdir / 'data'}", "-loggerLevel=ERROR"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as r:
                return bool(r.read().strip() == b"OK")
        except OSError:
            return False

    def export(self, match: str) -> list[dict[str, object]]:
        q = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{q}", timeout=10) as r:
            return [json.loads(line) for line in r.read().splitlines() if line.strip()]


@process_fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    try:
        vm = VictoriaMetrics(tmp_path / "vm")
        vm.start()
    except ServiceError as exc:
        pytest.skip(f"victoria-metrics not runnable: {exc}")
    yield vm
    vm.stop()


# --- security: a broker running the config `airgrid-admin broker-config` generates --------

@dataclass
class SecuredBroker:
    """Mosquitto on the generated config: TLS listener (`tls_port`) for device certificates,
    password listener (`port`); devices dev-a, dev-b (certificates), dev-p (password);
    accounts collector, watcher (collector role), app (app role)."""

    broker: Mosquitto
    home: AdminHome
    tls_port: int
    passwords: dict[str, str]

    @property
    def port(self) -> int:
        return self.broker.port

    def bundle(self, device: str) -> Path:
        return self.home.root / "devices" / device


@process_fixture
def secured_broker(tmp_path: Path) -> Iterator[SecuredBroker]:
    home = AdminHome(tmp_path / "admin")
    home.init("test county", broker_host="127.0.0.1")
    broker = Mosquitto(tmp_path / "mosquitto-secured")
    tls_port = free_port()
    out = tmp_path / "broker-config"
    home.write_broker_config(
        out, Listeners(tls_port=tls_port, port=broker.port, bind="127.0.0.1"), ["localhost"],
        data_dir=str(broker.workdir),
    )
    passwords: dict[str, str] = {}
    for dev in ("dev-a", "dev-b"):
        home.add_device(dev, install_dir=str(home.root / "devices" / dev))
    issued = home.add_device("dev-p", use_password=True)
    assert issued.password is not None
    passwords["dev-p"] = issued.password
    for name, role in (("collector", "collector"), ("watcher", "collector"), ("app", "app")):
        acc = home.add_account(name, role)  # type: ignore[arg-type]
        assert acc.password is not None
        passwords[name] = acc.password
    broker.base_config = (out / "mosquitto.conf").read_text()
    broker.start()
    # The ready check dials the password listener; make sure the TLS one is up as well.
    if not wait_for(lambda: _accepts(tls_port), 10, step=0.05):
        broker.stop()
        raise TimeoutError(f"the TLS listener on port {tls_port} never accepted")
    yield SecuredBroker(broker, home, tls_port, passwords)
    broker.stop()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True
