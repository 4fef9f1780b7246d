"""A minimal client for the parts of Grafana's HTTP API that `push` uses (stdlib only).

Endpoints as documented at grafana.com/docs/grafana/latest/developers/http_api/:
folders (`/api/folders`), data sources (`/api/datasources`, `/api/datasources/uid/:uid`)
and dashboards (`/api/dashboards/db`, `/api/dashboards/uid/:uid`). Authentication is a
service account token sent as `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from grafana.errors import PushRejected, PushUnavailable


class GrafanaApi:
    def __init__(self, url: str, token: str, timeout_s: float = 15.0) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise PushRejected(f"--url {url!r}: expected http(s)://host[:port][/subpath]")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, decoded JSON). 404 is returned, not raised: it means "absent"."""
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=self._headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return int(resp.status), _decode(resp.read())
        except urllib.error.HTTPError as exc:
            payload = _decode(exc.read())
            if exc.code == 404:
                return 404, payload
            message = payload.get("message", "") if isinstance(payload, dict) else ""
            where = f"{method} {path}"
            if exc.code >= 500 or exc.code == 429:
                raise PushUnavailable(f"Grafana {exc.code} on {where}: {message}") from exc
            raise PushRejected(f"Grafana {exc.code} on {where}: {message}") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise PushUnavailable(f"Grafana at {self.url}: {exc}") from exc

    # --- folders ----------------------------------------------------------------------

    def get_folder(self, uid: str) -> dict[str, Any] | None:
        status, body = self.request("GET", f"/api/folders/{_q(uid)}")
        return None if status == 404 else _dict(body)

    def create_folder(self, uid: str, title: str) -> dict[str, Any]:
        return _dict(self.request("POST", "/api/folders", {"uid": uid, "title": title})[1])

    def update_folder(self, uid: str, title: str) -> dict[str, Any]:
        body = {"title": title, "overwrite": True}
        return _dict(self.request("PUT", f"/api/folders/{_q(uid)}", body)[1])

    # --- data sources -----------------------------------------------------------------

    def get_datasource(self, uid: str) -> dict[str, Any] | None:
        status, body = self.request("GET", f"/api/datasources/uid/{_q(uid)}")
        return None if status == 404 else _dict(body)

    def create_datasource(self, ds: dict[str, Any]) -> dict[str, Any]:
        return _dict(self.request("POST", "/api/datasources", ds)[1])

    def update_datasource(self, uid: str, ds: dict[str, Any]) -> dict[str, Any]:
        return _dict(self.request("PUT", f"/api/datasources/uid/{_q(uid)}", ds)[1])

    # --- dashboards -------------------------------------------------------------------

    def get_dashboard(self, uid: str) -> dict[str, Any] | None:
        status, body = self.request("GET", f"/api/dashboards/uid/{_q(uid)}")
        return None if status == 404 else _dict(body)

    def save_dashboard(self, dashboard: dict[str, Any], folder_uid: str,
                       message: str) -> dict[str, Any]:
        body = {"dashboard": {**dashboard, "id": None}, "folderUid": folder_uid,
                "overwrite": True, "message": message}
        return _dict(self.request("POST", "/api/dashboards/db", body)[1])


def _q(uid: str) -> str:
    return urllib.parse.quote(uid, safe="")


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {"message": raw[:200].decode(errors="replace")}


def _dict(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise PushRejected(f"Grafana answered {type(body).__name__}, expected a JSON object")
    return body
