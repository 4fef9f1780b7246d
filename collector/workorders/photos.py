"""Photos of a handled work order: JPEG, PNG or WebP, at most `MAX_BYTES`, stored in the
alerting database by their SHA-256 (content-addressed, so an upload resent after a lost
answer stores nothing new). A step names its photo by that digest. A photo leaves with
its alert (`[alerting] resolved_retention`, `Store.attach_alert_table`)."""

from __future__ import annotations

import hashlib
import sqlite3
import threading

from collector.workorders.errors import BadStep

SCHEMA = """
CREATE TABLE IF NOT EXISTS work_photos (
    sha256 TEXT PRIMARY KEY, alert_id INTEGER NOT NULL, content_type TEXT NOT NULL,
    data BLOB NOT NULL, worker TEXT NOT NULL, at_ms INTEGER NOT NULL);
"""
MAX_BYTES = 1024 * 1024  # the page sends a phone photo scaled to 1280 px, about 150 kB


def content_type(data: bytes) -> str:
    """The image type by its signature (JPEG: FF D8 FF; PNG: 89 'PNG' CR LF 1A LF; WebP:
    'RIFF' size 'WEBP'); BadStep for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise BadStep("photo: expected a JPEG, PNG or WebP image")


class Photos:
    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self.db = db
        self.lock = lock
        with lock:
            db.executescript(SCHEMA)

    def add(self, alert_id: int, data: bytes, worker: str, now_ms: int) -> tuple[str, bool]:
        """(digest, stored now); the same photo again is not stored twice."""
        if not data or len(data) > MAX_BYTES:
            raise BadStep(f"photo: 1 byte to {MAX_BYTES} bytes")
        kind = content_type(data)
        digest = hashlib.sha256(data).hexdigest()
        with self.lock:
            cur = self.db.execute("INSERT OR IGNORE INTO work_photos VALUES (?,?,?,?,?,?)",
                                  (digest, alert_id, kind, data, worker, now_ms))
        return digest, cur.rowcount == 1

    def get(self, digest: str) -> tuple[int, str, bytes] | None:
        """(alert id, content type, bytes)."""
        with self.lock:
            row = self.db.execute("SELECT alert_id, content_type, data FROM work_photos"
                                  " WHERE sha256 = ?", (digest,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), bytes(row[2]))

    def belongs(self, digest: str, alert_id: int) -> bool:
        found = self.get(digest)
        return found is not None and found[0] == alert_id
