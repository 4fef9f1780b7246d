"""The InfluxDB 1.x storage sink: `/write` over HTTP."""

from __future__ import annotations

import base64
import gzip
import http.client
import urllib.error
import urllib.parse
import urllib.request

from collector.errors import Rejected, RetryLater, TimedOut


class InfluxV1Sink:
    """InfluxDB 1.x HTTP API: POST /write?db=...&precision=ms, gzip, basic auth."""

    def __init__(
        self, url: str, database: str, username: str | None = None,
        password: str | None = None, timeout_s: float = 10.0, gzip_level: int = 1,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.timeout_s = timeout_s
        self.gzip_level = gzip_level
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if gzip_level:
            self._headers["Content-Encoding"] = "gzip"
        if username:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._write_url = (
            f"{self.url}/write?" + urllib.parse.urlencode({"db": database, "precision": "ms"})
        )

    def ensure_database(self) -> None:
        q = urllib.parse.urlencode({"q": f'CREATE DATABASE "{self.database}"'}).encode()
        req = urllib.request.Request(f"{self.url}/query", data=q, headers={
            k: v for k, v in self._headers.items() if k == "Authorization"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s):
                pass
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise RetryLater(f"InfluxDB at {self.url}: {exc}") from exc

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        body = "\n".join(lines).encode()
        if self.gzip_level:
            body = gzip.compress(body, compresslevel=self.gzip_level)
        req = urllib.request.Request(self._write_url, data=body, headers=self._headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            if exc.code >= 500 or exc.code == 429:
                raise RetryLater(f"InfluxDB {exc.code}: {detail}") from exc
            if exc.code == 404 and "database not found" in detail:
                self.ensure_database()
                raise RetryLater(f"database {self.database} was missing; created") from exc
            raise Rejected(f"InfluxDB {exc.code}: {detail}") from exc
        except TimeoutError as exc:  # the answer did not come within timeout_s
            raise TimedOut(f"InfluxDB at {self.url}: no answer in {self.timeout_s} s") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if isinstance(getattr(exc, "reason", None), TimeoutError):
                raise TimedOut(f"InfluxDB at {self.url}: no answer in {self.timeout_s} s") from exc
            raise RetryLater(f"InfluxDB at {self.url}: {exc}") from exc

    def close(self) -> None:
        pass
