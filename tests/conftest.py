"""Fixtures that run the real services: Mosquitto and Debian's InfluxDB 1.x.

Each starts as a child process with a generated config in a temp dir, on a free loopback
port, and is stopped by PID. Function-scoped instances may be restarted mid-test with
`.restart()` / `.stop()` / `.start()` (fault tests); the session-scoped InfluxDB is shared
by tests that only need somewhere to write (each uses its own database).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration.services import InfluxDB, Mosquitto

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_db_counter = itertools.count()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[InfluxDB]:
    """A private InfluxDB (restartable)."""
    influx = InfluxDB(tmp_path / "influxdb")
    influx.start()
    yield influx
    influx.stop()


@pytest.fixture(scope="session")
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


# --- security: a broker running the config `airgrid-admin broker-config` generates --------

import socket  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from orchestration.admin.broker_config import Listeners  # noqa: E402
from orchestration.admin.home import AdminHome  # noqa: E402
from orchestration.services import free_port  # noqa: E402


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


@pytest.fixture
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
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", tls_port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                broker.stop()
                raise
            time.sleep(0.05)
    yield SecuredBroker(broker, home, tls_port, passwords)
    broker.stop()
