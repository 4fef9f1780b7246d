"""The durable outbox: SQLite in WAL mode, one row per captured reading.

A reading is *captured* once its row is committed. It gets the next per-device `seq`
(kept in the `meta` table, so it keeps increasing across restarts) and is deleted only
after the broker acknowledged the message that carried it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from airgrid.wire import Reading, decode_reading, encode_reading

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL,
                                     body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('last_seq', 0), ('dropped', 0), ('corrupt_resets', 0);
"""


class Outbox:
    """Thread-safe: the sampler captures while the publisher drains."""

    def __init__(self, path: Path, max_rows: int = 1_000_000, synchronous: str = "FULL") -> None:
        self.path = path
        self.max_rows = max_rows
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open(synchronous)

    def _open(self, synchronous: str) -> sqlite3.Connection:
        try:
            db = self._connect(synchronous)
            db.execute("PRAGMA quick_check").fetchone()
            return db
        except sqlite3.DatabaseError as exc:
            # Never refuse to start: move the damaged file aside and begin again.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error("outbox %s is corrupt (%s); moved to %s", self.path, exc, aside)
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    side.rename(aside.with_name(aside.name + suffix))
            db = self._connect(synchronous)
            db.execute("UPDATE meta SET value = value + 1 WHERE key = 'corrupt_resets'")
            # The old last_seq is unreadable; epoch ms exceeds any seq issued at under one
            # reading per millisecond, so seqs never repeat (the collector sees one gap).
            db.execute(
                "UPDATE meta SET value = ? WHERE key = 'last_seq'", (int(time.time() * 1000),)
            )
            return db

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(_SCHEMA)
        return db

    def capture(self, values: Mapping[str, object]) -> Reading:
        """Assign the next seq and commit; returns the captured reading.

        When the cap is reached the oldest rows are dropped, in the same transaction,
        and counted.
        """
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                (last,) = db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
                reading = Reading(seq=last + 1, **values)  # type: ignore[arg-type]
                db.execute(
                    "INSERT INTO readings VALUES (?, ?, ?)",
                    (reading.seq, reading.ts, encode_reading(reading)),
                )
                db.execute("UPDATE meta SET value=? WHERE key='last_seq'", (reading.seq,))
                (depth,) = db.execute("SELECT count(*) FROM readings").fetchone()
                excess = depth - self.max_rows
                if excess > 0:
                    db.execute(
                        "DELETE FROM readings WHERE seq IN "
                        "(SELECT seq FROM readings ORDER BY seq LIMIT ?)",
                        (excess,),
                    )
                    db.execute(
                        "UPDATE meta SET value = value + ? WHERE key='dropped'", (excess,)
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return reading

    def oldest(self, limit: int, after_seq: int = 0) -> list[Reading]:
        """The oldest pending readings with seq > after_seq, in seq order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM readings WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [decode_reading(body) for (body,) in rows]

    def delete(self, seqs: list[int]) -> None:
        """Forget readings the broker has acknowledged."""
        with self._lock:
            self._db.executemany("DELETE FROM readings WHERE seq = ?", [(s,) for s in seqs])

    def depth(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT count(*) FROM readings").fetchone()
        return int(n)

    def counters(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM meta").fetchall()
        return {k: int(v) for k, v in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()
