"""The Grafana push speaks plain HTTP (stdlib), so the environment keeps the real urllib3
and influxdb-client works beside it in one process (docs/decisions.md, Grafana).

influxdb-client is checked against real servers: its `/ping` on InfluxDB 1.x, and a write
through `/api/v2/write` to VictoriaMetrics (InfluxDB 1.6 has no /api/v2), read back from
VictoriaMetrics' export API.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from orchestration.services import InfluxDB
from tests.support.fixtures import VictoriaMetrics
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_grafana_extra_pulls_no_urllib3_replacement() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    names = " ".join(extras["grafana"]).lower()
    for banned in ("grafana-client", "grafana-api", "grafana_api", "urllib3-future",
                   "niquests"):
        assert banned not in names
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("urllib3-future")


def test_urllib3_is_the_genuine_package_after_importing_the_push_code() -> None:
    import urllib3

    import grafana.cli
    import grafana.http_api
    import grafana.push  # noqa: F401

    # urllib3-future would have replaced the module files under the urllib3 name.
    assert urllib3.__version__ == importlib.metadata.version("urllib3")
    assert not (Path(urllib3.__file__).parent.parent / "urllib3_future").exists()


def test_influxdb_client_works_beside_the_grafana_client(
    victoria_metrics: VictoriaMetrics, shared_influxdb: InfluxDB
) -> None:
    from influxdb_client import InfluxDBClient, Point
    from influxdb_client.client.write_api import SYNCHRONOUS

    from grafana.http_api import GrafanaApi

    # The push code's HTTP path, in the same process (InfluxDB's /ping answers 204).
    assert GrafanaApi(shared_influxdb.url, "t").request("GET", "/ping") == (204, {})

    with InfluxDBClient(url=shared_influxdb.url, token="", org="-") as v1:
        assert v1.ping()
    with InfluxDBClient(url=victoria_metrics.url, token="unused", org="airgrid") as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket="airgrid",
            record=Point("readings").tag("device", "beside-1").field("pm2_5", 42.5))
    # Make the freshly written sample searchable now rather than at the next flush.
    urllib.request.urlopen(f"{victoria_metrics.url}/internal/force_flush", timeout=5).read()
    rows: list[dict[str, object]] = []

    def exported() -> bool:
        rows[:] = victoria_metrics.export('{__name__="readings_pm2_5",device="beside-1"}')
        return bool(rows)

    assert wait_for(exported, 15, step=0.2)
    assert rows[0]["values"] == [42.5]
