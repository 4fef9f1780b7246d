"""Create or update the airgrid folder, datasource and dashboards in a running Grafana.

Idempotent: what already matches is left alone (reported `unchanged`), so a second run
changes nothing and bumps no dashboard version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grafana.http_api import GrafanaApi
from grafana.model import DATASOURCE_UID

FOLDER_UID = "airgrid"
FOLDER_TITLE = "Air quality (airgrid)"
# Keys of a dashboard that Grafana manages itself and that a comparison ignores.
_VOLATILE = ("id", "version")


@dataclass(frozen=True)
class InfluxSettings:
    url: str
    database: str = "airgrid"
    user: str = ""
    password: str = ""  # 1.x password, or a 2.x / 3.x API token

    def datasource(self) -> dict[str, Any]:
        """The datasource as `POST /api/datasources` takes it (same as the provisioning file)."""
        ds: dict[str, Any] = {
            "name": "airgrid InfluxDB", "uid": DATASOURCE_UID, "type": "influxdb",
            "access": "proxy", "url": self.url, "user": self.user, "basicAuth": False,
            "isDefault": False,
            "jsonData": {"version": "InfluxQL", "dbName": self.database, "httpMode": "POST",
                         "timeInterval": "60s"},
        }
        if self.password:
            ds["secureJsonData"] = {"password": self.password}
        return ds


@dataclass
class Report:
    actions: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, uid, what)

    def add(self, kind: str, uid: str, what: str) -> None:
        self.actions.append((kind, uid, what))

    def changed(self) -> int:
        return sum(1 for _, _, what in self.actions if what != "unchanged")


def _datasource_matches(current: dict[str, Any], want: dict[str, Any]) -> bool:
    if "secureJsonData" in want:
        return False  # a secret cannot be read back; setting it again is harmless
    for key, value in want.items():
        if key == "jsonData":
            have = current.get("jsonData") or {}
            if any(have.get(k) != v for k, v in value.items()):
                return False
        elif current.get(key) != value:
            return False
    return True


def _strip(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in _VOLATILE}


def push(api: GrafanaApi, influx: InfluxSettings, dashboards: list[dict[str, Any]],
         folder_uid: str = FOLDER_UID, folder_title: str = FOLDER_TITLE) -> Report:
    report = Report()

    folder = api.get_folder(folder_uid)
    if folder is None:
        api.create_folder(folder_uid, folder_title)
        report.add("folder", folder_uid, "created")
    elif folder.get("title") != folder_title:
        api.update_folder(folder_uid, folder_title)
        report.add("folder", folder_uid, "updated")
    else:
        report.add("folder", folder_uid, "unchanged")

    want = influx.datasource()
    current = api.get_datasource(DATASOURCE_UID)
    if current is None:
        api.create_datasource(want)
        report.add("datasource", DATASOURCE_UID, "created")
    elif not _datasource_matches(current, want):
        api.update_datasource(DATASOURCE_UID, want)
        report.add("datasource", DATASOURCE_UID, "updated")
    else:
        report.add("datasource", DATASOURCE_UID, "unchanged")

    for dash in dashboards:
        uid = str(dash["uid"])
        existing = api.get_dashboard(uid)
        if existing is not None:
            meta = existing.get("meta") or {}
            same = _strip(existing.get("dashboard") or {}) == _strip(dash)
            if same and meta.get("folderUid") == folder_uid:
                report.add("dashboard", uid, "unchanged")
                continue
        api.save_dashboard(dash, folder_uid, "airgrid-grafana push")
        report.add("dashboard", uid, "created" if existing is None else "updated")
    return report
