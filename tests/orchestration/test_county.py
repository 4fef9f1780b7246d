"""The county that `airgrid stack up` runs: sensor faults go to the device's technician,
with the inhibition docs/alerting.md gives; pollution to the grid worker."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from collector.alerting import config as ac
from collector.alerting.routing import match
from orchestration.county import CountyServices, county_devices, registry

DOCS = Path(__file__).resolve().parents[2] / "docs" / "alerting.md"


def test_sensor_faults_are_routed_to_the_technician_and_hold_back_unusual_alerts(
        tmp_path: Path) -> None:
    county = CountyServices(county_devices(4))
    data = tomllib.loads(county.collector_tables(tmp_path))
    cfg = ac.from_dict(data["alerting"], tmp_path / "collector.toml")
    assert cfg.route is not None

    def receiver(labels: dict[str, str]) -> list[str]:
        assert cfg.route is not None
        return [r.receiver for r in match(cfg.route, labels)]

    assert receiver({"alertname": "sensor_stuck", "category": "device",
                     "audience": "maintenance"}) == ["maintenance"]
    assert receiver({"alertname": "pm25_heavy", "category": "pollution"}) == ["grid_worker"]
    assert [t.to for t in cfg.receivers["maintenance"].targets] == ["technician"]
    # the inhibition is the documented one, word for word
    block = re.search(r"```toml\n(.*?)```", DOCS.read_text("utf-8"), re.S)
    assert block is not None
    documented = ac.from_dict(tomllib.loads(block.group(1))["alerting"] | {
        "ack": {}, "app": {}}, tmp_path / "doc.toml").inhibit
    assert [r for r in documented if r in cfg.inhibit] == [
        r for r in documented if any(mt.name == "audience" for mt in r.source)]


def test_every_device_has_a_technician_apart_from_its_grid_worker() -> None:
    entries = registry(county_devices(7))["devices"]
    assert isinstance(entries, list)
    for d in entries:
        tech = d["technician"]
        assert tech["phone"].startswith("+86") and tech["name"].endswith("设备维护员")
        assert tech["phone"] not in {c["phone"] for c in d["contacts"]}
    # one technician a township
    assert len({(d["township"], d["technician"]["phone"]) for d in entries}) == len(
        {d["township"] for d in entries})
