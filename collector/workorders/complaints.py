"""Citizen complaints in (from the 12345 hotline or the 一网统管 platform): each opens a work
order for the grid it falls in, with the nearest devices' readings around its time.

The body (JSON, signed like our webhooks: `X-Airgrid-Signature: t=…,v1=HMAC-SHA256`):

    {"source": "12345", "id": "GD20261126001", "text": "工地扬尘很大",
     "place": "城关镇建设路", "lat": 36.101, "lon": 117.201,
     "time": "2026-11-26T10:00:00+08:00"}

Idempotent on (source, id): the same complaint sent again answers with the order it opened.
The grid a complaint falls in is the grid of the registered device nearest to it (the
registry has device places, not grid boundaries).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from collector.registry import Device
from collector.workorders.errors import BadStep, WorkOrderError
from collector.workorders.orders import COMPLAINT_RULE, WorkOrders
from collector.workorders.readings import ReadingsQuery, ReadingsUnavailable, nearest

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS complaints (
    source TEXT NOT NULL, source_id TEXT NOT NULL, alert_id INTEGER NOT NULL,
    received_ms INTEGER NOT NULL, body TEXT NOT NULL, evidence TEXT NOT NULL,
    PRIMARY KEY (source, source_id));
"""
EVIDENCE_DEVICES = 3
EVIDENCE_WITHIN_M = 5_000.0
Text = Annotated[str, Meta(min_length=1, max_length=2000)]


class Complaint(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    source: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
    text: Text
    lat: Annotated[float, Meta(ge=-90, le=90)]
    lon: Annotated[float, Meta(ge=-180, le=180)]
    time: Annotated[dt.datetime, Meta(tz=True)]
    place: Annotated[str, Meta(max_length=200)] = ""


def parse(body: bytes) -> Complaint:
    """The complaint, or BadStep naming the field that is wrong."""
    try:
        return msgspec.json.decode(body, type=Complaint)
    except msgspec.ValidationError as exc:
        raise BadStep(f"complaint: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise BadStep(f"complaint is not JSON: {exc}") from exc


class NoDevices(WorkOrderError):
    """No registered device to place the complaint in a grid (422)."""


@dataclass(frozen=True)
class Opened:
    order_id: int
    created: bool
    township: str
    grid: str
    evidence: dict[str, Any]


class ComplaintIntake:
    def __init__(self, orders: WorkOrders, devices: Callable[[], Mapping[str, Device]],
                 readings: ReadingsQuery | None) -> None:
        self.orders = orders
        self.store = orders.store
        self.devices = devices
        self.readings = readings
        with self.store.lock:
            self.store.db.executescript(SCHEMA)
        # a complaint is part of its alert's history: it leaves with it (and a resubmission
        # after that opens a new alert)
        self.store.attach_alert_table("complaints")

    def _known(self, c: Complaint) -> Opened | None:
        with self.store.lock:
            row = self.store.db.execute(
                "SELECT alert_id, evidence FROM complaints WHERE source = ? AND source_id = ?",
                (c.source, c.id)).fetchone()
        if row is None:
            return None
        ev = json.loads(row[1])
        return Opened(int(row[0]), False, ev.get("township", ""), ev.get("grid", ""), ev)

    def receive(self, c: Complaint, now_ms: int) -> Opened:
        known = self._known(c)
        if known is not None:
            self.orders.counters["complaint_repeated"] += 1
            return known
        at_ms = int(c.time.timestamp() * 1000)
        near = nearest(self.devices().values(), c.lat, c.lon, EVIDENCE_DEVICES)
        if not near:
            self.orders.counters["complaint_unplaced"] += 1
            raise NoDevices("no registered device: the complaint cannot be placed in a grid")
        home = near[0][0]
        readings: dict[str, dict[str, float | int]] = {}
        if self.readings is not None:
            try:
                readings = self.readings.around([d.id for d, m in near
                                                 if m <= EVIDENCE_WITHIN_M], at_ms)
            except ReadingsUnavailable as exc:
                # the order still opens; its evidence says the readings were not at hand
                self.orders.counters["complaint_evidence_unavailable"] += 1
                log.warning("complaint %s/%s: no evidence: %s", c.source, c.id, exc)
        evidence = {
            "township": home.township, "grid": home.grid, "at_ms": at_ms,
            "devices": [{"device": d.id, "name": d.name or d.site, "distance_m": round(m),
                         "lat": d.lat, "lon": d.lon, **readings.get(d.id, {})}
                        for d, m in near if m <= EVIDENCE_WITHIN_M]}
        labels = {"township": home.township, "grid": home.grid, "device": home.id,
                  "scope": "complaint", "severity": "warning", "category": "complaint",
                  "complaint_source": c.source}
        annotations = {"summary": c.text[:200], "place": c.place, "complaint_id": c.id,
                       "lat": repr(c.lat), "lon": repr(c.lon)}
        with self.orders.manager.lock, self.store.tx() as db:
            known = self._known(c)  # a concurrent resend decided it meanwhile
            if known is not None:
                return known
            # the subject is in MQTT topics and an alert's key: ASCII, unique per complaint
            a = self.orders.manager.open_external(
                COMPLAINT_RULE, f"complaint-{c.source}-{c.id}".replace(":", "_"), labels,
                annotations, now_ms, {"complaint": {"source": c.source, "id": c.id,
                                                    "text": c.text, "place": c.place},
                                      "evidence": evidence})
            db.execute("INSERT INTO complaints VALUES (?,?,?,?,?,?)",
                       (c.source, c.id, a.id, now_ms, msgspec.json.encode(c).decode(),
                        json.dumps(evidence, ensure_ascii=False)))
        self.orders.counters["complaint_opened"] += 1
        return Opened(a.id, True, home.township, home.grid, evidence)

    def evidence(self, alert_id: int) -> dict[str, Any] | None:
        with self.store.lock:
            row = self.store.db.execute("SELECT evidence, body FROM complaints WHERE"
                                        " alert_id = ?", (alert_id,)).fetchone()
        if row is None:
            return None
        return {**json.loads(row[0]), "complaint": json.loads(row[1])}
