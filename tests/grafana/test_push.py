"""`airgrid-grafana push` against Grafana's HTTP API.

There is no Grafana server to be had here, so the API is played by an HTTP server on
loopback that implements the documented endpoints the command uses
(grafana.com/docs/grafana/latest/developers/http_api/: folder, data_source, dashboard)
and checks each request as Grafana would: Bearer token, JSON body, required fields,
folder existence, name clashes, `overwrite` and dashboard versions.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from grafana import generate
from grafana.cli import main
from grafana.errors import PushRejected, PushUnavailable
from grafana.http_api import GrafanaApi
from grafana.model import DATASOURCE_UID
from grafana.push import InfluxSettings, push
from tests.support.http_fake import LoopbackServer, Request, Response

TOKEN = "glsa_test_0123456789"


class FakeGrafana:
    def __init__(self) -> None:
        self.folders: dict[str, dict[str, Any]] = {}
        self.datasources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self._next_id = 1

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        self.requests.append((method, path))
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, {"message": "Invalid API key"}
        data: Any = None
        if method in ("POST", "PUT"):
            if headers.get("content-type") != "application/json":
                return 415, {"message": "Content-Type must be application/json"}
            try:
                data = json.loads(body)
            except ValueError:
                return 400, {"message": "bad request data"}
        parts = path.strip("/").split("/")
        route = (method, *parts[:2])
        if route == ("GET", "api", "folders") and len(parts) == 3:
            f = self.folders.get(parts[2])
            return (200, f) if f else (404, {"message": "folder not found"})
        if route == ("POST", "api", "folders") and len(parts) == 2:
            if not data.get("title"):
                return 400, {"message": "folder title cannot be empty"}
            if data.get("uid") in self.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            f = {"id": self.next_id(), "uid": data["uid"], "title": data["title"],
                 "version": 1}
            self.folders[data["uid"]] = f
            return 200, f
        if route == ("PUT", "api", "folders") and len(parts) == 3:
            f = self.folders.get(parts[2])
            if not f:
                return 404, {"message": "folder not found"}
            if not data.get("overwrite") and data.get("version") != f["version"]:
                return 412, {"message": "the folder has been changed by someone else"}
            f.update(title=data["title"], version=f["version"] + 1)
            return 200, f
        if parts[:3] == ["api", "datasources", "uid"] and len(parts) == 4:
            return self._datasource_by_uid(method, parts[3], data)
        if route == ("POST", "api", "datasources") and len(parts) == 2:
            missing = [k for k in ("name", "type", "access") if not data.get(k)]
            if missing:
                return 400, {"message": f"missing {missing}"}
            if any(d["name"] == data["name"] for d in self.datasources.values()):
                return 409, {"message": "data source with the same name already exists"}
            ds = self._store_datasource(data, self.next_id())
            return 200, {"datasource": ds, "id": ds["id"], "message": "Datasource added",
                         "name": ds["name"]}
        if parts[:3] == ["api", "dashboards", "uid"] and method == "GET":
            d = self.dashboards.get(parts[3])
            return (200, copy.deepcopy(d)) if d else (404, {"message": "Dashboard not found"})
        if route == ("POST", "api", "dashboards") and parts[2:] == ["db"]:
            return self._save_dashboard(data)
        self.errors.append(f"undocumented call {method} {path}")
        return 404, {"message": "Not found"}

    def _store_datasource(self, data: dict[str, Any], ds_id: int) -> dict[str, Any]:
        ds = {k: v for k, v in data.items() if k != "secureJsonData"}
        ds["id"] = ds_id
        ds["secureJsonFields"] = {k: True for k in data.get("secureJsonData") or {}}
        self.datasources[data.get("uid") or f"auto{ds_id}"] = ds
        return ds

    def _datasource_by_uid(self, method: str, uid: str, data: Any) -> tuple[int, Any]:
        ds = self.datasources.get(uid)
        if ds is None:
            return 404, {"message": "Data source not found"}
        if method == "GET":
            return 200, copy.deepcopy(ds)
        if method == "PUT":
            missing = [k for k in ("name", "type", "access") if not data.get(k)]
            if missing:
                return 400, {"message": f"missing {missing}"}
            ds = self._store_datasource({**data, "uid": uid}, ds["id"])
            return 200, {"datasource": ds, "id": ds["id"], "message": "Datasource updated",
                         "name": ds["name"]}
        return 405, {"message": "method not allowed"}

    def _save_dashboard(self, data: dict[str, Any]) -> tuple[int, Any]:
        dash = data.get("dashboard")
        if not isinstance(dash, dict) or not dash.get("title"):
            return 400, {"message": "Dashboard title cannot be empty"}
        folder = data.get("folderUid", "")
        if folder and folder not in self.folders:
            return 400, {"message": "folder not found"}
        uid = dash.get("uid")
        existing = self.dashboards.get(uid) if uid else None
        if existing and not data.get("overwrite"):
            return 412, {"status": "name-exists", "message": "A dashboard with the same uid "
                         "already exists"}
        if existing is None and dash.get("id") is not None:
            return 404, {"message": "Dashboard not found"}  # an id must name a stored one
        version = existing["meta"]["version"] + 1 if existing else 1
        dash_id = existing["dashboard"]["id"] if existing else self.next_id()
        stored = {**dash, "id": dash_id, "version": version}
        self.dashboards[uid] = {"dashboard": stored,
                                "meta": {"folderUid": folder, "version": version}}
        return 200, {"id": dash_id, "uid": uid, "url": f"/d/{uid}", "status": "success",
                     "version": version}


@pytest.fixture
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    fake = FakeGrafana()

    def respond(request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, body = fake.handle(request.method, request.path, headers, request.body)
        return Response.json(status, body)

    server = LoopbackServer(respond)
    yield fake, server.url
    server.stop()
    assert fake.errors == []


INFLUX = InfluxSettings("http://influxdb:8086", "airgrid", "grafana")


def test_first_push_creates_everything_in_the_folder(grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    report = push(GrafanaApi(url, TOKEN), INFLUX, generate.load_committed())
    assert [(k, w) for k, _, w in report.actions] == [
        ("folder", "created"), ("datasource", "created")] + [("dashboard", "created")] * 5
    assert fake.folders["airgrid"]["title"] == "Air quality (airgrid)"
    assert sorted(fake.dashboards) == sorted(b["uid"] for b in generate.load_committed())
    assert {d["meta"]["folderUid"] for d in fake.dashboards.values()} == {"airgrid"}
    ds = fake.datasources[DATASOURCE_UID]
    assert ds["type"] == "influxdb" and ds["url"] == "http://influxdb:8086"
    assert ds["jsonData"]["version"] == "InfluxQL" and ds["jsonData"]["dbName"] == "airgrid"


def test_pushed_datasource_is_the_provisioned_one(grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    push(GrafanaApi(url, TOKEN), INFLUX, generate.load_committed())
    text = (generate.PROVISIONING_DIR / "datasources" / "airgrid.yaml").read_text("utf-8")
    env = {"AIRGRID_INFLUX_URL": INFLUX.url, "AIRGRID_INFLUX_USER": INFLUX.user,
           "AIRGRID_INFLUX_DB": INFLUX.database, "AIRGRID_INFLUX_PASSWORD": ""}
    for k, v in env.items():  # Grafana expands ${VAR} in provisioning files
        text = text.replace("${" + k + "}", v)
    (provisioned,) = yaml.safe_load(text)["datasources"]
    pushed = fake.datasources[DATASOURCE_UID]
    for key in ("name", "uid", "type", "access", "url", "user"):
        assert pushed[key] == provisioned[key], key
    assert pushed["jsonData"] == provisioned["jsonData"]


def test_second_push_changes_nothing_and_a_changed_dashboard_is_updated(
    grafana: tuple[FakeGrafana, str]
) -> None:
    fake, url = grafana
    api = GrafanaApi(url, TOKEN)
    boards = generate.load_committed()
    push(api, INFLUX, boards)
    versions = {u: d["meta"]["version"] for u, d in fake.dashboards.items()}
    writes_before = sum(1 for m, _ in fake.requests if m != "GET")

    again = push(api, INFLUX, boards)
    assert again.changed() == 0
    assert sum(1 for m, _ in fake.requests if m != "GET") == writes_before
    assert {u: d["meta"]["version"] for u, d in fake.dashboards.items()} == versions

    boards[0]["title"] += " (edited)"
    third = push(api, INFLUX, boards)
    assert [(u, w) for k, u, w in third.actions if w != "unchanged"] == [
        (boards[0]["uid"], "updated")]
    assert fake.dashboards[boards[0]["uid"]]["meta"]["version"] == 2
    assert len(fake.dashboards) == 5  # updated in place, never duplicated

    moved = push(api, InfluxSettings("http://other:8086"), boards)
    assert [(k, w) for k, _, w in moved.actions if w != "unchanged"] == [
        ("datasource", "updated")]
    assert fake.datasources[DATASOURCE_UID]["url"] == "http://other:8086"
    assert len(fake.datasources) == 1


def test_cli_push_prints_a_summary(grafana: tuple[FakeGrafana, str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    fake, url = grafana
    assert main(["push", "--url", url, "--token", TOKEN]) == 0
    assert len(fake.dashboards) == 5
    assert main(["push", "--url", url, "--token", TOKEN]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == {"changed": 0, "total": 7}


def test_bad_token_is_a_clear_error_not_a_crash(grafana: tuple[FakeGrafana, str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    fake, url = grafana
    with pytest.raises(PushRejected, match="401 on GET /api/folders/airgrid: Invalid API key"):
        push(GrafanaApi(url, "wrong"), INFLUX, generate.load_committed())
    assert main(["push", "--url", url, "--token", "wrong"]) == 2
    assert "Invalid API key" in capsys.readouterr().err
    assert fake.dashboards == {}


def test_no_token_and_bad_url_are_named(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    assert main(["push", "--url", "http://127.0.0.1:9"]) == 2
    assert "GRAFANA_TOKEN" in capsys.readouterr().err
    assert main(["push", "--url", "grafana:3000", "--token", TOKEN]) == 2
    assert "--url 'grafana:3000'" in capsys.readouterr().err


def test_unreachable_grafana_is_retry_later() -> None:
    from orchestration.services import free_port

    with pytest.raises(PushUnavailable, match=r"Grafana at http://127\.0\.0\.1"):
        push(GrafanaApi(f"http://127.0.0.1:{free_port()}", TOKEN, timeout_s=2), INFLUX,
             generate.load_committed())


def test_password_comes_from_the_environment_only(grafana: tuple[FakeGrafana, str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fake, url = grafana
    monkeypatch.setenv("AIRGRID_INFLUX_PASSWORD", "s3cret-token")
    assert main(["push", "--url", url, "--token", TOKEN]) == 0
    ds = fake.datasources[DATASOURCE_UID]
    assert ds["secureJsonFields"] == {"password": True}
    assert "s3cret-token" not in json.dumps(ds)  # Grafana never returns a secret
