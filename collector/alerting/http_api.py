"""The alerting HTTP API, every call with `Authorization: Bearer <token>`:

- `POST /api/alerts/{id}/ack`, body (optional) `{"by": "张三"}`: 200 with the alert, 404
  for an unknown alert.
- `POST /api/silences`, body `{"matchers": {"device": "cg-001"}, "starts": <epoch ms,
  default now>, "ends": <epoch ms>, "author": "王工", "reason": "更换传感器"}`: 201 with the
  silence id.

401 for a wrong or missing token, 400 for a bad body. With no token configured every
request is refused: an open endpoint would let anyone stop an escalation.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from collector.alerting.errors import UnknownAlert
from collector.alerting.events import alert_data
from collector.alerting.manager import AlertManager

log = logging.getLogger(__name__)
PATH = re.compile(r"^/api/alerts/(\d+)/ack/?$")
SILENCES = re.compile(r"^/api/silences/?$")


def _silence(body: object, now_ms: int) -> tuple[dict[str, str], int, int, str, str]:
    """The fields of a silence request; ValueError names what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    matchers = body.get("matchers")
    if not isinstance(matchers, dict) or not matchers or \
            not all(isinstance(k, str) and isinstance(v, str) for k, v in matchers.items()):
        raise ValueError('"matchers" must be a non-empty object of label: string')
    starts, ends = body.get("starts", now_ms), body.get("ends")
    if not isinstance(starts, int) or not isinstance(ends, int) or ends <= starts:
        raise ValueError('"starts" and "ends" must be epoch milliseconds, ends after starts')
    author, reason = body.get("author"), body.get("reason")
    if not isinstance(author, str) or not author or not isinstance(reason, str) or not reason:
        raise ValueError('"author" and "reason" are required strings')
    return matchers, starts, ends, author, reason


class AlertHttpApi:
    def __init__(self, manager: AlertManager, token: str, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.manager = manager
        self.token = token
        self.host = host
        self.requested_port = port
        self.server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("ack http: " + fmt, *args)

            def _answer(self, code: int, body: dict[str, object]) -> None:
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                m = PATH.match(self.path)
                if m is None and not SILENCES.match(self.path):
                    self._answer(404, {"error": f"no such endpoint {self.path}"})
                    return
                given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                if not owner.token or not hmac.compare_digest(given.encode(),
                                                              owner.token.encode()):
                    owner.manager.counters["ack_http_unauthorized"] += 1
                    self._answer(401, {"error": "missing or wrong token"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if m is None:
                    self._add_silence(raw)
                    return
                try:
                    body = json.loads(raw) if raw else {}
                    by = body.get("by", "http") if isinstance(body, dict) else None
                    if not isinstance(by, str) or not by:
                        raise ValueError('"by" must be a non-empty string')
                except ValueError as exc:
                    self._answer(400, {"error": f"body: {exc}"})
                    return
                try:
                    alert = owner.manager.acknowledge(int(m.group(1)), by,
                                                      int(time.time() * 1000), "http")
                except UnknownAlert as exc:
                    self._answer(404, {"error": str(exc)})
                    return
                self._answer(200, alert_data(alert))

            def _add_silence(self, raw: bytes) -> None:
                try:
                    fields = _silence(json.loads(raw or b"null"), int(time.time() * 1000))
                    sid = owner.manager.add_silence(*fields)
                except ValueError as exc:
                    owner.manager.counters["silence_rejected"] += 1
                    self._answer(400, {"error": f"body: {exc}"})
                    return
                self._answer(201, {"id": sid})

        self.server = ThreadingHTTPServer((self.host, self.requested_port), Handler)
        threading.Thread(target=self.server.serve_forever, name="alert-http-api",
                         daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
