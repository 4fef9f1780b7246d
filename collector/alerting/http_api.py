"""The alerting HTTP API, every call with `Authorization: Bearer <token>`, the token of
one principal (`[[alerting.ack.principals]]`: a person or an app, never shared):

- `POST /api/alerts/{id}/ack`: 200 with the alert, acknowledged by the token's holder
  (its name goes into the history; a `"by"` in the body is ignored); 403 when the holder
  is not responsible for the alert (grid worker, the officers above, see
  `principals`); 404 for an unknown alert.
- `POST /api/silences`, body `{"matchers": {"device": "cg-001"}, "starts": <epoch ms,
  default now>, "ends": <epoch ms>, "reason": "更换传感器"}`: 201 with the silence id; the
  author is the token's holder. Regex matchers are RE2 (linear time).

401 for a wrong or missing token, 400 for a bad body, 413 for a body over 64 KiB, 405
for another method, 503 when `max_connections` are already being served. With no
principal configured every request is refused: an open endpoint would let anyone stop an
escalation. The server is `bounded_http.BoundedHTTPServer` (deadlines, thread cap).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time

from collector.alerting.bounded_http import BoundedHandler, BoundedHTTPServer
from collector.alerting.errors import NotResponsible, UnknownAlert
from collector.alerting.events import alert_data
from collector.alerting.manager import AlertManager
from collector.alerting.principals import Principal, by_token

log = logging.getLogger(__name__)
PATH = re.compile(r"^/api/alerts/([0-9]{1,18})/ack/?$")
SILENCES = re.compile(r"^/api/silences/?$")
MAX_MS = 2**62  # epoch ms far beyond any silence; SQLite integers are 64-bit


def _silence(body: object, now_ms: int, author: str) -> tuple[dict[str, str], int, int, str,
                                                                 str]:
    """The fields of a silence request; ValueError names what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    matchers = body.get("matchers")
    if not isinstance(matchers, dict) or not matchers or len(matchers) > 32 or \
            not all(isinstance(k, str) and isinstance(v, str) for k, v in matchers.items()):
        raise ValueError('"matchers" must be an object of 1 to 32 label: string')
    starts, ends = body.get("starts", now_ms), body.get("ends")
    if type(starts) is not int or type(ends) is not int or not 0 <= starts < ends <= MAX_MS:
        raise ValueError('"starts" and "ends" must be epoch milliseconds, ends after starts')
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason or len(reason) > 1000:
        raise ValueError('"reason" is a required string (at most 1000 characters)')
    return matchers, starts, ends, author, reason


class AlertHttpApi:
    def __init__(self, manager: AlertManager, principals: tuple[Principal, ...],
                 host: str = "127.0.0.1", port: int = 0, max_connections: int = 16,
                 request_timeout_s: float = 10.0) -> None:
        self.manager = manager
        self.principals = principals
        self.host = host
        self.requested_port = port
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        self.server: BoundedHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def start(self) -> None:
        owner = self

        class Handler(BoundedHandler):
            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("alerting http: " + fmt, *args)

            def do_POST(self) -> None:
                m = PATH.match(self.path)
                if m is None and not SILENCES.match(self.path):
                    self.answer(404, {"error": f"no such endpoint {self.path[:200]!r}"})
                    return
                header = self.headers.get("Authorization", "")
                who = by_token(owner.principals, header.removeprefix("Bearer ").strip())
                if who is None:
                    owner.manager.counters["ack_http_unauthorized"] += 1
                    self.answer(401, {"error": "missing or wrong token"},
                                {"WWW-Authenticate": "Bearer"})
                    return
                raw = self.read_body()
                if raw is None:
                    return
                try:
                    body = json.loads(raw) if raw.strip() else {}
                except (ValueError, RecursionError) as exc:
                    self.answer(400, {"error": f"body is not JSON: {str(exc)[:200]}"})
                    return
                if m is None:
                    self._add_silence(body, who)
                    return
                try:
                    alert = owner.manager.acknowledge(int(m.group(1)), who,
                                                      int(time.time() * 1000), "http")
                except UnknownAlert as exc:
                    self.answer(404, {"error": str(exc)})
                    return
                except NotResponsible as exc:
                    self.answer(403, {"error": str(exc)})
                    return
                self.answer(200, alert_data(alert))

            def _add_silence(self, body: object, who: Principal) -> None:
                try:
                    fields = _silence(body, int(time.time() * 1000), who.name)
                    sid = owner.manager.add_silence(*fields)
                except ValueError as exc:
                    owner.manager.counters["silence_rejected"] += 1
                    self.answer(400, {"error": f"body: {exc}"})
                    return
                log.info("silence %d added by %s: %s", sid, who.name, fields[0])
                self.answer(201, {"id": sid})

        self.server = BoundedHTTPServer((self.host, self.requested_port), Handler,
                                        self.max_connections, self.request_timeout_s,
                                        self.manager.counters)  # one set, like the acks
        threading.Thread(target=self.server.serve_forever, name="alert-http-api",
                         daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
