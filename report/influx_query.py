"""InfluxQL over HTTP: InfluxDB 1.x `/query`, and 2.x/3.x through the same `/query`
compatibility endpoint (the bucket mapped to a database by a DBRP mapping).

1.x authenticates with basic auth (username/password); 2.x with `Authorization: Token …`
(InfluxDB 2 API docs, "InfluxDB 1.x compatibility API": `/query` accepts the token in the
Authorization header and `db` names the DBRP-mapped database).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from report.errors import SourceUnavailable


@dataclass(frozen=True)
class Series:
    """One series of a result: its tags, column names and rows (time first, epoch ms)."""

    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [row[i] for row in self.values]


@dataclass(frozen=True)
class InfluxReader:
    url: str
    database: str
    username: str | None = None
    password: str | None = None
    token: str | None = None  # set: the 2.x compatibility endpoint
    timeout_s: float = 30.0
    _headers: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.token:
            self._headers["Authorization"] = f"Token {self.token}"
        elif self.username:
            raw = f"{self.username}:{self.password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()

    def query(self, q: str) -> list[Series]:
        """Every series of the (single-statement) query; [] when it matched nothing."""
        params = urllib.parse.urlencode({"db": self.database, "q": q, "epoch": "ms"})
        req = urllib.request.Request(f"{self.url.rstrip('/')}/query?{params}",
                                     headers=self._headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            raise SourceUnavailable(f"InfluxDB {self.url} answered {exc.code}: {detail}") from exc
        except (OSError, ValueError) as exc:
            raise SourceUnavailable(f"InfluxDB {self.url} cannot be queried: {exc}") from exc
        out: list[Series] = []
        for result in body.get("results", []):
            if "error" in result:
                # A missing database is "no data" for a report, not a failure.
                if "database not found" in str(result["error"]):
                    return []
                raise SourceUnavailable(f"InfluxDB {self.url}: {result['error']}")
            for s in result.get("series", []):
                out.append(Series(dict(s.get("tags") or {}), list(s["columns"]),
                                  [list(v) for v in s["values"]]))
        return out


def quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
