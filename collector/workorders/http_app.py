"""The grid worker app's HTTP server: the page, its JSON API and the complaint endpoint.

On `alerting.bounded_http.BoundedHTTPServer` (thread cap, whole-request deadline, body
limit before reading, 405/408/411/413/503, a handler's error a bare 500), like the
acknowledgement API. Every API call but the complaint endpoint carries the sign-in link's
token as `Authorization: Bearer <token>`.

- `GET /app/` (and `app.js`, `app.css`): the page.
- `GET /api/app/me`: who is signed in, their area, the causes, the map key.
- `GET /api/app/orders`: the open work orders of their area.
- `GET /api/app/orders/{id}`: one order: alert, steps (SMS and MQTT acks included),
  device, neighbours, a complaint's evidence. 403 outside the area, 404 unknown.
- `GET /api/app/orders/{id}/chart`: the device's last 24 h (10-minute means of PM2.5).
- `POST /api/app/orders/{id}/steps`, body `{"step": "arrived", "key": "<idempotency
  key>", "cause": "construction_dust", "note": "…", "lat": …, "lon": …}`: 201 taken,
  200 when the key was taken before (a resend), 400 bad body, 409 order handled.
- `POST /api/app/orders/{id}/photos`, body the image (JPEG, PNG or WebP, at most 1 MiB):
  201 (or 200 when already there) with `{"photo": <sha256>}`, which a 处置完成 step then
  names; `GET /api/app/photos/{sha256}` gives it back to those who see its order.
- `POST /api/complaints`: a signed complaint (`complaints`): 201 opened, 200 known,
  401 bad signature, 400 bad body, 422 nowhere to place it.

401 answers name why (`reason`: unknown, expired, revoked), so the page can say so.
Every refusal is counted in the alert manager's counters (`/metrics`).
"""

from __future__ import annotations

import gzip
import json
import logging
import mimetypes
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from collector.alerting.bounded_http import BoundedHandler, BoundedHTTPServer
from collector.alerting.channels.webhook_verify import HEADER, SignatureError, verify
from collector.alerting.model import Alert
from collector.registry import Device
from collector.workorders.complaints import ComplaintIntake, NoDevices
from collector.workorders.complaints import parse as parse_complaint
from collector.workorders.errors import BadStep, NoSuchOrder, NotSignedIn, OutsideArea
from collector.workorders.links import SignInLinks
from collector.workorders.orders import CAUSES, Step, WorkOrders, source_of
from collector.workorders.photos import MAX_BYTES as MAX_PHOTO_BYTES
from collector.workorders.readings import ReadingsQuery, ReadingsUnavailable, nearest
from collector.workorders.workers import Worker, WorkerDirectory

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC = {"/app/": "index.html", "/app/index.html": "index.html", "/app/app.js": "app.js",
          "/app/app.css": "app.css"}
ORDER = re.compile(r"^/api/app/orders/([0-9]{1,18})(/chart|/steps|/photos)?/?$")
PHOTO = re.compile(r"^/api/app/photos/([0-9a-f]{64})$")
NEIGHBOURS = 4


def _now_ms() -> int:
    return int(time.time() * 1000)


class WorkerApp:
    def __init__(self, orders: WorkOrders, complaints: ComplaintIntake, links: SignInLinks,
                 workers: WorkerDirectory, devices: Callable[[], Mapping[str, Device]],
                 readings: ReadingsQuery | None, complaint_secret: str,
                 host: str = "127.0.0.1", port: int = 0, max_connections: int = 32,
                 request_timeout_s: float = 10.0, tianditu_key: str = "",
                 public_url: str = "") -> None:
        self.orders = orders
        self.complaints = complaints
        self.links = links
        self.workers = workers
        self.devices = devices
        self.readings = readings
        self.secret = complaint_secret.encode()
        self.host = host
        self.requested_port = port
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        self.tianditu_key = tianditu_key
        self.public_url = public_url
        self.counters = orders.counters
        self.server: BoundedHTTPServer | None = None
        self.static = {name: (STATIC_DIR / name).read_bytes() for name in set(STATIC.values())}
        # compressed once: a phone on 3G pays for every byte
        self.static_gz = {name: gzip.compress(data, 9, mtime=0)
                          for name, data in self.static.items()}

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"

    # -- what the API answers --------------------------------------------------------------
    def signed_in(self, header: str, now_ms: int) -> Worker:
        grant = self.links.check(header.removeprefix("Bearer ").strip(), now_ms)
        who = self.workers.get(grant.worker)
        if who is None:
            raise NotSignedIn("unknown", "this worker is no longer in the registry")
        return who

    def _place(self, a: Alert) -> tuple[float | None, float | None, str]:
        d = self.devices().get(a.labels.get("device", a.subject))
        if a.annotations.get("lat") and a.annotations.get("lon"):
            return float(a.annotations["lat"]), float(a.annotations["lon"]), \
                a.annotations.get("place", "")
        if d is not None:
            return d.lat, d.lon, d.name or d.site
        return None, None, ""

    def order_json(self, a: Alert, steps: list[Step]) -> dict[str, Any]:
        lat, lon, place = self._place(a)
        return {"id": a.id, "source": source_of(a), "rule": a.rule,
                "device": a.labels.get("device", a.subject), "place": place,
                "township": a.labels.get("township", ""), "grid": a.labels.get("grid", ""),
                "lat": lat, "lon": lon, "value": round(a.value, 1), "state": a.state,
                "status": self.orders.status(steps, a), "started_ms": a.started_ms,
                "acked_by": a.acked_by, "level": a.level,
                "summary": a.annotations.get("summary", "")}

    def detail_json(self, a: Alert, steps: list[Step]) -> dict[str, Any]:
        out = self.order_json(a, steps)
        history: list[dict[str, Any]] = [{"step": "opened", "at_ms": a.started_ms}]
        history += [s.to_json() for s in steps]
        out["history"] = history
        out["neighbours"] = []
        if out["lat"] is not None:
            own = out["device"]
            out["neighbours"] = [
                {"device": d.id, "name": d.name or d.site, "lat": d.lat, "lon": d.lon,
                 "distance_m": round(m)}
                for d, m in nearest([d for d in self.devices().values() if d.id != own],
                                    out["lat"], out["lon"], NEIGHBOURS)]
        out["evidence"] = self.complaints.evidence(a.id)
        return out

    # -- server ----------------------------------------------------------------------------
    def start(self) -> None:
        owner = self

        class Handler(BoundedHandler):
            allowed_methods = ("GET", "HEAD", "POST")

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("worker app http: " + fmt, *args)

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in ("/", "/app"):
                    self.send_response(302)
                    self.send_header("Location", "/app/" + self.path[len(path):])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path in STATIC:
                    self._static(STATIC[path])
                    return
                if path == "/api/app/me":
                    self._with_worker(lambda who, now: owner.me(who))
                    return
                if path == "/api/app/orders":
                    self._with_worker(lambda who, now: {"orders": [
                        owner.order_json(a, s) for a, s in owner.orders.orders(who, now)]})
                    return
                p = PHOTO.match(path)
                if p is not None:
                    self._photo(p.group(1))
                    return
                m = ORDER.match(path)
                if m is None or m.group(2) in ("/steps", "/photos"):
                    self.answer(404, {"error": f"no such page {path[:200]!r}"})
                    return
                oid = int(m.group(1))
                if m.group(2) == "/chart":
                    self._with_worker(lambda who, now: owner.chart(who, oid, now))
                else:
                    self._with_worker(lambda who, now: owner.detail_json(
                        *owner.orders.order(who, oid, now)))

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                if path.rstrip("/") == "/api/complaints":
                    self._complaint()
                    return
                m = ORDER.match(path)
                if m is None or m.group(2) not in ("/steps", "/photos"):
                    self.answer(404, {"error": f"no such endpoint {path[:200]!r}"})
                    return
                oid = int(m.group(1))
                now = _now_ms()
                # a step's body (at most 64 KiB) is read before the 401, so the answer is
                # not lost to a reset of a connection closed with unread data; a photo's
                # (1 MiB) only for a signed-in worker
                raw = self.read_body() if m.group(2) == "/steps" else b""
                if raw is None:
                    return
                try:
                    who = owner.signed_in(self.headers.get("Authorization", ""), now)
                except NotSignedIn as exc:
                    self._unauthorized(exc)
                    return
                if m.group(2) == "/photos":
                    self._add_photo(who, oid, now)
                    return
                try:
                    body = json.loads(raw)
                    if not isinstance(body, dict):
                        raise BadStep("body: expected a JSON object")
                    created, a = owner.step(who, oid, body, now)
                except (ValueError, RecursionError) as exc:
                    owner.counters["app_bad_request"] += 1
                    self.answer(400, {"error": f"body is not JSON: {str(exc)[:200]}"})
                    return
                except BadStep as exc:
                    owner.counters["app_bad_request"] += 1
                    self.answer(exc.status, {"error": str(exc)})
                    return
                except (NoSuchOrder, OutsideArea) as exc:
                    self._refuse(exc)
                    return
                detail = owner.detail_json(a, owner.orders.steps(a.id))
                self.answer(201 if created else 200, {**detail, "repeated": not created})

            def _add_photo(self, who: Worker, oid: int, now: int) -> None:
                try:
                    owner.orders.order(who, oid, now)
                except (NoSuchOrder, OutsideArea) as exc:
                    self._refuse(exc)
                    return
                self.max_body_bytes = MAX_PHOTO_BYTES  # this route only
                raw = self.read_body()
                if raw is None:
                    return
                try:
                    digest, new = owner.orders.photos.add(oid, raw, who.id, now)
                except BadStep as exc:
                    owner.counters["app_bad_photo"] += 1
                    self.answer(400, {"error": str(exc)})
                    return
                self.answer(201 if new else 200, {"photo": digest})

            def _photo(self, digest: str) -> None:
                now = _now_ms()
                try:
                    who = owner.signed_in(self.headers.get("Authorization", ""), now)
                    found = owner.orders.photos.get(digest)
                    if found is None:
                        raise NoSuchOrder("no such photo")
                    owner.orders.order(who, found[0], now)
                except (NotSignedIn, NoSuchOrder, OutsideArea) as exc:
                    self._refuse(exc)
                    return
                self.send_response(200)
                self.send_header("Content-Type", found[1])
                self.send_header("Content-Length", str(len(found[2])))
                self.send_header("Cache-Control", "private, max-age=86400")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(found[2])

            def _complaint(self) -> None:
                raw = self.read_body()
                if raw is None:
                    return
                if not owner.secret:
                    owner.counters["complaint_refused"] += 1
                    self.answer(403, {"error": "complaints are not enabled (no "
                                      "[alerting.app.complaints] secret)"})
                    return
                try:
                    verify(owner.secret, self.headers.get(HEADER, ""), raw)
                except SignatureError as exc:
                    owner.counters["complaint_bad_signature"] += 1
                    self.answer(401, {"error": f"{HEADER}: {exc}"[:300]})
                    return
                try:
                    c = parse_complaint(raw)
                    opened = owner.complaints.receive(c, _now_ms())
                except BadStep as exc:
                    owner.counters["complaint_rejected"] += 1
                    self.answer(400, {"error": str(exc)[:500]})
                    return
                except NoDevices as exc:
                    self.answer(422, {"error": str(exc)})
                    return
                self.answer(201 if opened.created else 200,
                            {"order_id": opened.order_id, "township": opened.township,
                             "grid": opened.grid, "evidence": opened.evidence,
                             "repeated": not opened.created})

            def _with_worker(self, what: Callable[[Worker, int], dict[str, Any]]) -> None:
                now = _now_ms()
                try:
                    who = owner.signed_in(self.headers.get("Authorization", ""), now)
                    body = what(who, now)
                except (NotSignedIn, NoSuchOrder, OutsideArea) as exc:
                    self._refuse(exc)
                    return
                except ReadingsUnavailable as exc:
                    self.answer(503, {"error": str(exc)[:300]}, {"Retry-After": "30"})
                    return
                self.answer(200, body, {"Cache-Control": "no-store"})

            def _refuse(self, exc: NotSignedIn | NoSuchOrder | OutsideArea) -> None:
                """The answer to a request the worker may not make: 401, 404 or 403."""
                if isinstance(exc, NotSignedIn):
                    self._unauthorized(exc)
                else:
                    self.answer(404 if isinstance(exc, NoSuchOrder) else 403,
                                {"error": str(exc)})

            def _unauthorized(self, exc: NotSignedIn) -> None:
                owner.counters[f"app_unauthorized_{exc.reason}"] += 1
                self.answer(401, {"error": str(exc), "reason": exc.reason},
                            {"WWW-Authenticate": "Bearer"})

            def _static(self, name: str) -> None:
                zipped = "gzip" in self.headers.get("Accept-Encoding", "")
                data = (owner.static_gz if zipped else owner.static)[name]
                kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
                self.send_response(200)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                if zipped:
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Vary", "Accept-Encoding")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-cache")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Content-Security-Policy",
                                 "default-src 'self'; img-src 'self' https://*.tianditu.gov.cn "
                                 "data: blob:; style-src 'self'")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        self.server = BoundedHTTPServer((self.host, self.requested_port), Handler,
                                        self.max_connections, self.request_timeout_s,
                                        self.counters)
        threading.Thread(target=self.server.serve_forever, name="worker-app-http",
                         daemon=True).start()
        log.info("grid worker app on %s/app/", self.url)

    def me(self, who: Worker) -> dict[str, Any]:
        return {"id": who.id, "name": who.name, "role": who.role, "township": who.township,
                "grid": who.grid, "causes": list(CAUSES), "tianditu_key": self.tianditu_key}

    def chart(self, who: Worker, oid: int, now_ms: int) -> dict[str, Any]:
        a, _ = self.orders.order(who, oid, now_ms)
        device = a.labels.get("device", a.subject)
        points = self.readings.last_day(device, now_ms) if self.readings else []
        return {"device": device, "from_ms": now_ms - 86_400_000, "to_ms": now_ms,
                "threshold": 150, "points": points}

    def step(self, who: Worker, oid: int, body: dict[str, Any], now_ms: int
             ) -> tuple[bool, Alert]:
        def opt(key: str, kind: type | tuple[type, ...]) -> Any:
            v = body.get(key)
            if v is not None and (not isinstance(v, kind) or isinstance(v, bool)):
                raise BadStep(f"{key}: expected {getattr(kind, '__name__', 'a number')}")
            return v

        step, key = body.get("step"), body.get("key")
        if not isinstance(step, str) or not isinstance(key, str):
            raise BadStep('"step" and "key" are required strings')
        place: list[float | None] = []
        for k in ("lat", "lon"):
            v = opt(k, (int, float))
            try:
                place.append(None if v is None else float(v))
            except OverflowError as exc:
                raise BadStep(f"{k}: degrees (WGS-84)") from exc
        return self.orders.take_step(who, oid, step, key, now_ms, cause=opt("cause", str),
                                     note=opt("note", str), lat=place[0], lon=place[1],
                                     photo=opt("photo", str))

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
