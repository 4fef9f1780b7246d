"""What the app shows beside a work order, read back from InfluxDB (InfluxQL `/query`):
a device's last 24 hours, and the readings of the devices near a complaint around its time.

Device ids are checked against the wire format's pattern before they go into a query, so
nothing a client sends is spliced into InfluxQL.
"""

from __future__ import annotations

import base64
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

from airgrid.measurements import READINGS
from airgrid.wire import DEVICE_ID_RE
from collector.registry import Device
from collector.workorders.errors import WorkOrderError

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius


class ReadingsUnavailable(WorkOrderError):
    """InfluxDB did not answer: the page shows the order without its chart (try later)."""


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) between two WGS-84 points, in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def nearest(devices: Iterable[Device], lat: float, lon: float, n: int,
            within_m: float = math.inf) -> list[tuple[Device, float]]:
    ranked = sorted(((d, distance_m(lat, lon, d.lat, d.lon)) for d in devices),
                    key=lambda p: (p[1], p[0].id))
    return [p for p in ranked[:n] if p[1] <= within_m]


class ReadingsQuery:
    def __init__(self, url: str, database: str, username: str | None = None,
                 password: str | None = None, token: str | None = None,
                 timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.headers: dict[str, str] = {}
        if token:
            self.headers["Authorization"] = f"Token {token}"
        elif username:
            raw = f"{username}:{password or ''}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        self.timeout_s = timeout_s

    def _query(self, q: str) -> list[dict[str, Any]]:
        qs = urllib.parse.urlencode({"db": self.database, "q": q, "epoch": "ms"})
        req = urllib.request.Request(f"{self.url}/query?{qs}", headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                doc = json.loads(resp.read())
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            raise ReadingsUnavailable(f"InfluxDB {self.url}: {exc}") from exc
        result = (doc.get("results") or [{}])[0]
        if "error" in result:
            raise ReadingsUnavailable(f"InfluxDB: {result['error']}")
        series: list[dict[str, Any]] = result.get("series") or []
        return series

    def last_day(self, device: str, now_ms: int, every_min: int = 10) -> list[tuple[int, float]]:
        """(time ms, mean PM2.5) per `every_min` minutes over the 24 h before `now_ms`."""
        if not DEVICE_ID_RE.match(device):
            return []
        start = now_ms - 86_400_000
        series = self._query(
            f'SELECT mean("pm2_5") FROM "{READINGS}" WHERE "device" = \'{device}\' AND '
            f"time >= {start}ms AND time <= {now_ms}ms GROUP BY time({every_min}m) fill(none)")
        out = []
        for s in series:
            for t, v in s.get("values") or []:
                if v is not None:
                    out.append((int(t), round(float(v), 1)))
        return out

    def around(self, devices: Iterable[str], at_ms: int, half_window_ms: int = 1_800_000
               ) -> dict[str, dict[str, float | int]]:
        """Per device: mean, max and count of PM2.5 within ±`half_window_ms` of `at_ms`."""
        ids = [d for d in devices if DEVICE_ID_RE.match(d)]
        if not ids:
            return {}
        which = " OR ".join(f'"device" = \'{d}\'' for d in ids)
        series = self._query(
            f'SELECT mean("pm2_5"), max("pm2_5"), count("pm2_5") FROM "{READINGS}" WHERE '
            f"({which}) AND time >= {at_ms - half_window_ms}ms AND "
            f'time <= {at_ms + half_window_ms}ms GROUP BY "device"')
        out: dict[str, dict[str, float | int]] = {}
        for s in series:
            device = (s.get("tags") or {}).get("device", "")
            values = (s.get("values") or [[0, None, None, 0]])[0]
            if values[1] is not None:
                out[device] = {"pm2_5_mean": round(float(values[1]), 1),
                               "pm2_5_max": round(float(values[2]), 1), "count": int(values[3])}
        return out
