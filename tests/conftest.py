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

from airgrid.services import InfluxDB, Mosquitto

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
