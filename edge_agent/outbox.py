"""The durable outbox: SQLite in WAL mode, one row per captured reading.

A reading is *captured* once its row is committed. It gets the next per-device `seq`
(kept in the `meta` table, so it keeps increasing across restarts) and is deleted only
after the broker acknowledged the message that carried it.

Commit policy: with `commit_interval_s = 0` every reading is its own transaction (a
power cut loses nothing captured); with N > 0 readings wait in memory and are committed
together every N seconds, so a power cut loses at most the last N seconds of readings,
which were never captured and never sent, in exchange for N times fewer SD card writes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import msgspec

from airgrid.wire import Reading, decode_reading, encode_reading

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL,
                                     body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('last_seq', 0), ('dropped', 0), ('corrupt_resets', 0),
    ('sensor_run_s', 0), ('clock_fixed', 0);
-- The outbox's epoch: a random id made with the file, so a re-flashed card or a
-- recreated outbox starts a new (device, epoch, seq) sequence at the collector.
CREATE TABLE IF NOT EXISTS identity (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO identity VALUES ('epoch', lower(hex(randomblob(8))));
"""
# Columns added after the first schema; older files get them on open.
_EXTRA_COLUMNS = {"boot": "TEXT NOT NULL DEFAULT ''", "mono_ms": "INTEGER NOT NULL DEFAULT 0",
                  "synced": "INTEGER NOT NULL DEFAULT 1"}


class Outbox:
    """Thread-safe: the sampler captures while the publisher drains."""

    def __init__(
        self,
        path: Path,
        max_rows: int = 1_000_000,
        synchronous: str = "FULL",
        *,
        max_bytes: int = 0,
        commit_interval_s: float = 0.0,
    ) -> None:
        self.path = path
        self.max_rows = max_rows
        self.max_bytes = max_bytes  # 0 = no byte cap
        self.commit_interval_s = commit_interval_s
        self._lock = threading.Lock()
        self._buffer: list[tuple[Reading, bytes, str, int, int]] = []
        self._last_commit = time.monotonic()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open(synchronous)
        (self._last_seq,) = self._db.execute(
            "SELECT value FROM meta WHERE key='last_seq'").fetchone()
        self._rows, self._bytes = self._db.execute(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM readings").fetchone()

    # --- opening, and surviving a damaged file ------------------------------------------

    def _open(self, synchronous: str) -> sqlite3.Connection:
        try:
            db = self._connect(synchronous)
            (verdict,) = db.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                db.close()
                raise sqlite3.DatabaseError(f"quick_check: {verdict}")
            return db
        except sqlite3.DatabaseError as exc:
            return self._start_afresh(synchronous, exc)

    def _start_afresh(self, synchronous: str, exc: Exception) -> sqlite3.Connection:
        # Never refuse to start: move the damaged file aside and begin again.
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.time_ns()}")
        log.error("outbox %s is corrupt (%s); moved to %s and starting a fresh one",
                  self.path, exc, aside)
        self.path.rename(aside)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.rename(aside.with_name(aside.name + suffix))
        db = self._connect(synchronous)
        # The count lived in the damaged file; the files moved aside are the record.
        resets = len(list(self.path.parent.glob(f"{self.path.name}.corrupt-*[0-9]")))
        db.execute("UPDATE meta SET value = ? WHERE key = 'corrupt_resets'", (resets,))
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
        have = {row[1] for row in db.execute("PRAGMA table_info(readings)")}
        for name, decl in _EXTRA_COLUMNS.items():
            if name not in have:
                db.execute(f"ALTER TABLE readings ADD COLUMN {name} {decl}")
        return db

    # --- capture ------------------------------------------------------------------------

    def capture(
        self, values: Mapping[str, object], boot: str = "", mono_ms: int = 0
    ) -> Reading:
        """Assign the next seq; commit now, or with the next `flush()` (commit policy)."""
        with self._lock:
            reading = Reading(seq=self._last_seq + 1, **values)  # type: ignore[arg-type]
            self._last_seq = reading.seq
            self._buffer.append(
                (reading, encode_reading(reading), boot, mono_ms, int(reading.clock_synced))
            )
            if time.monotonic() - self._last_commit >= self.commit_interval_s:
                self._commit()
        return reading

    def flush(self) -> int:
        """Commit readings waiting under the commit policy; returns how many."""
        with self._lock:
            return self._commit()

    def flush_due(self) -> int:
        """Commit if the commit interval has passed."""
        with self._lock:
            if self._buffer and time.monotonic() - self._last_commit >= self.commit_interval_s:
                return self._commit()
        return 0

    def _commit(self) -> int:
        rows, self._buffer = self._buffer, []
        self._last_commit = time.monotonic()
        if not rows:
            return 0
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO readings (seq, ts_ms, body, boot, mono_ms, synced) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(r.seq, r.ts, body, boot, mono, synced) for r, body, boot, mono, synced in rows],
            )
            db.execute("UPDATE meta SET value=? WHERE key='last_seq'", (rows[-1][0].seq,))
            added_bytes = sum(len(body) for _, body, *_ in rows)
            dropped_rows, dropped_bytes = self._enforce_cap(
                self._rows + len(rows), self._bytes + added_bytes)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._last_seq = rows[0][0].seq - 1
            raise
        self._rows += len(rows) - dropped_rows
        self._bytes += added_bytes - dropped_bytes
        return len(rows)

    def _enforce_cap(self, rows: int, nbytes: int) -> tuple[int, int]:
        """Drop the oldest rows beyond the caps, counted; inside the open transaction."""
        over_rows = rows - self.max_rows
        over_bytes = nbytes - self.max_bytes if self.max_bytes else 0
        if over_rows <= 0 and over_bytes <= 0:
            return 0, 0
        drop_seq = None
        dropped = dropped_bytes = 0
        for seq, size in self._db.execute(
            "SELECT seq, length(body) FROM readings ORDER BY seq"
        ):
            if dropped >= over_rows and dropped_bytes >= over_bytes:
                break
            drop_seq, dropped, dropped_bytes = seq, dropped + 1, dropped_bytes + size
        self._db.execute("DELETE FROM readings WHERE seq <= ?", (drop_seq,))
        self._db.execute("UPDATE meta SET value = value + ? WHERE key='dropped'", (dropped,))
        log.warning("outbox full: dropped the %d oldest readings (up to seq %s)",
                    dropped, drop_seq)
        return dropped, dropped_bytes

    # --- draining -----------------------------------------------------------------------

    def oldest(self, limit: int, after_seq: int = 0) -> list[Reading]:
        """The oldest committed readings with seq > after_seq, in seq order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM readings WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [decode_reading(body) for (body,) in rows]

    def oldest_raw(self, limit: int, after_seq: int = 0) -> list[tuple[int, bytes]]:
        """(seq, encoded reading) pairs: lets the publisher build a batch without decoding."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, body FROM readings WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [(int(s), bytes(b)) for s, b in rows]

    def delete(self, seqs: list[int]) -> int:
        """Forget readings the broker has acknowledged; returns how many were still here."""
        if not seqs:
            return 0
        with self._lock:
            lo, hi = min(seqs), max(seqs)
            if hi - lo + 1 == len(seqs):  # a contiguous batch: one range delete
                (nbytes,) = self._db.execute(
                    "SELECT coalesce(sum(length(body)), 0) FROM readings "
                    "WHERE seq BETWEEN ? AND ?", (lo, hi)).fetchone()
                cur = self._db.execute("DELETE FROM readings WHERE seq BETWEEN ? AND ?",
                                       (lo, hi))
            else:
                marks = ",".join("?" * len(seqs))
                (nbytes,) = self._db.execute(
                    f"SELECT coalesce(sum(length(body)), 0) FROM readings "
                    f"WHERE seq IN ({marks})", seqs).fetchone()
                cur = self._db.execute(f"DELETE FROM readings WHERE seq IN ({marks})", seqs)
            self._rows -= cur.rowcount
            self._bytes -= int(nbytes)
            return int(cur.rowcount)

    # --- the clock ----------------------------------------------------------------------

    def fix_clock(self, boot: str, wall_now_ms: int, mono_now_ms: int) -> int:
        """The clock is now synchronised: restamp this boot's unsynced readings.

        Each was stored with the monotonic time it was taken; its true time is
        now - (monotonic now - monotonic then). Readings from earlier boots cannot be
        placed (their monotonic clock is gone) and keep their `clock_unsynced` flag.
        """
        with self._lock:
            self._commit()
            rows = self._db.execute(
                "SELECT seq, body, mono_ms FROM readings WHERE synced = 0 AND boot = ?",
                (boot,)).fetchall()
            if not rows:
                return 0
            updates = []
            for seq, body, mono in rows:
                r = decode_reading(body)
                fixed = msgspec.structs.replace(
                    r, ts=wall_now_ms - (mono_now_ms - int(mono)), clock_synced=True,
                    flags=tuple(f for f in r.flags if f != "clock_unsynced"))
                updates.append((fixed.ts, encode_reading(fixed), seq))
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "UPDATE readings SET ts_ms = ?, body = ?, synced = 1 WHERE seq = ?", updates)
            self._db.execute("UPDATE meta SET value = value + ? WHERE key='clock_fixed'",
                             (len(updates),))
            self._db.execute("COMMIT")
            log.info("clock synchronised: restamped %d readings taken before", len(updates))
            return len(updates)

    # --- state --------------------------------------------------------------------------

    def depth(self) -> int:
        """Committed readings waiting for the broker's acknowledgement."""
        with self._lock:
            return int(self._rows)

    def depth_bytes(self) -> int:
        with self._lock:
            return int(self._bytes)

    @property
    def epoch(self) -> str:
        """This outbox's epoch (16 hex digits), sent with every batch."""
        with self._lock:
            (value,) = self._db.execute(
                "SELECT value FROM identity WHERE key='epoch'").fetchone()
        return str(value)

    @property
    def last_seq(self) -> int:
        with self._lock:
            return int(self._last_seq)

    def counters(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM meta").fetchall()
        return {k: int(v) for k, v in rows}

    def set_counter(self, key: str, value: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def close(self) -> None:
        with self._lock:
            self._commit()
            self._db.close()
