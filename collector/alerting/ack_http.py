"""HTTP acknowledgement: `POST /api/alerts/{id}/ack` with `Authorization: Bearer <token>`.

Body (optional JSON): `{"by": "张三"}`. Answers 200 with the alert, 401 for a wrong or
missing token, 404 for an unknown alert, 400 for a bad body. With no token configured
every request is refused: an open acknowledgement endpoint would let anyone stop an
escalation.
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


class AckHttpServer:
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
                if m is None:
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

        self.server = ThreadingHTTPServer((self.host, self.requested_port), Handler)
        threading.Thread(target=self.server.serve_forever, name="alert-ack-http",
                         daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
