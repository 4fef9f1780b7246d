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

import contextlib
import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import msgspec

from airgrid.sd_notify import notify
from airgrid.wire import Reading, decode_reading, encode_reading

log = logging.getLogger(__name__)

# SQLite primary result codes (https://sqlite.org/rescode.html); Python reports the
# extended code, whose low byte is the primary one.
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26
#: Only these mean the file itself is damaged; anything else (locked, read-only, full)
#: leaves it where it is.
INTEGRITY_FAILURES = frozenset({SQLITE_CORRUPT, SQLITE_NOTADB})
#: errors without a corruption code that only damage gives when our own file is opened
#: and first read, as unreadable as a corrupt page: SQLite's for a header whose schema
#: format number is out of range and for a schema whose names were changed (our tables
#: are created with their columns), Python's for schema text that is not UTF-8
#: (quick_check looks at none of these)
DAMAGE_MESSAGES = ("unsupported file format", "Could not decode to UTF-8", "no such column",
                   "no such table")
WAL_FILES = ("-wal", "-shm")
#: Seconds between attempts on a locked outbox at start, and between its log lines.
LOCKED_RETRY_S = 1.0
LOCKED_LOG_EVERY_S = 30.0
#: Seconds between "disk full" log lines while the disk stays full.
DISK_FULL_LOG_EVERY_S = 60.0
#: Below this many free bytes an I/O error while writing is taken for a full disk.
DISK_FULL_MARGIN_BYTES = 64 * 1024


_TROUBLE_OVER = {"disk full": "the disk has space again", "lock": "the lock is released"}


class OutboxError(Exception):
    """Base of the outbox's errors."""


class OutboxNotWritable(OutboxError):
    """The outbox file or its directory cannot be written: the agent cannot capture.

    The caller stops (the agent exits with `EXIT_NOT_WRITABLE`); retrying in-process
    cannot help until someone fixes the permission or the mount.
    """


class OutboxWriteFailed(OutboxError):
    """A write other than a capture failed (disk full, locked): try again later."""


class IntegrityFailure(sqlite3.DatabaseError):
    """`PRAGMA quick_check` found the file damaged."""


def sqlite_code(exc: sqlite3.Error) -> int | None:
    """The primary SQLite result code of an error (None if it carries none)."""
    if isinstance(exc, IntegrityFailure):
        return SQLITE_CORRUPT
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return int(code) & 0xFF
    text = str(exc)
    for needle, guess in (("locked", SQLITE_BUSY), ("disk is full", SQLITE_FULL),
                          ("not a database", SQLITE_NOTADB), ("malformed", SQLITE_CORRUPT),
                          ("readonly", SQLITE_READONLY), ("unable to open", SQLITE_CANTOPEN)):
        if needle in text:
            return guess
    return None


def is_damage(exc: sqlite3.Error) -> bool:
    """An error that says the file itself is damaged (moved aside and salvaged)."""
    return sqlite_code(exc) in INTEGRITY_FAILURES or any(m in str(exc)
                                                         for m in DAMAGE_MESSAGES)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged process may still write on path's filesystem."""
    try:
        st = os.statvfs(path)
    except OSError:
        return -1
    return st.f_bavail * st.f_frsize


def _why_not_writable(path: Path) -> str:
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return f"{os.strerror(errno.EROFS)} (errno {errno.EROFS})"
        st = path.stat()
    except OSError as exc:
        return f"{exc.strerror} (errno {exc.errno})"
    return (f"{os.strerror(errno.EACCES)} (errno {errno.EACCES}; mode {st.st_mode & 0o7777:o}, "
            f"owner uid {st.st_uid}, the agent runs as uid {os.geteuid()})")


def _lock_holders(path: Path) -> str:
    """Who holds POSIX locks on the outbox or its WAL index, from /proc/locks (Linux)."""
    inodes = set()
    for p in (path, *(path.with_name(path.name + s) for s in WAL_FILES)):
        with contextlib.suppress(OSError):
            inodes.add(p.stat().st_ino)
    pids = set()
    try:
        with open("/proc/locks") as f:
            for line in f:
                # "1: POSIX  ADVISORY  WRITE 1234 08:01:56789 0 EOF"
                parts = line.split()
                if (len(parts) > 5 and parts[1] == "POSIX" and parts[4].isdigit()
                        and int(parts[5].rsplit(":", 1)[-1]) in inodes):
                    pids.add(int(parts[4]))
    except (OSError, ValueError):
        return "pid unknown"
    pids.discard(os.getpid())
    return "pid " + ", ".join(map(str, sorted(pids))) if pids else "pid unknown"


def salvage(path: Path) -> tuple[list[tuple[Reading, str, int, int]], int]:
    """The readable, valid readings of a damaged outbox, in seq order; and how many not.

    Reads the rowid b-tree from both ends, so damage in the middle loses only the rows
    it covers. Each body must still pass the wire validator to be kept.
    """
    found: dict[int, tuple[Reading, str, int, int]] = {}
    unreadable = 0
    try:
        # as_uri() percent-encodes, so a '?' or '#' in the path cannot end the file name.
        src = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return [], 0
    # damaged text in a row (a boot id) is read with U+FFFD, not raised: the reading is
    # still worth keeping. Damaged text in the schema comes back in SQLite's own error
    # message, which Python cannot decode either: that file is as unreadable as any
    src.text_factory = lambda b: b.decode("utf-8", "replace")
    try:
        try:
            have = {row[1] for row in src.execute("PRAGMA table_info(readings)")}
        except (sqlite3.DatabaseError, UnicodeDecodeError):
            return [], 0
        cols = ", ".join(c if c in have else repr(d) for c, d in
                         (("boot", ""), ("mono_ms", 0), ("synced", 1)))
        for order in ("ASC", "DESC"):
            try:
                for seq, body, boot, mono, synced in src.execute(
                        f"SELECT seq, body, {cols} FROM readings ORDER BY seq {order}"):
                    if seq in found:
                        break
                    if not isinstance(body, bytes):
                        # a damaged cell of another type: bytes() of a large integer is
                        # that many zero bytes (gigabytes on a Pi), not a reading
                        unreadable += 1
                        continue
                    try:
                        found[int(seq)] = (decode_reading(body), str(boot), int(mono),
                                           int(synced))
                    except (msgspec.DecodeError, TypeError, ValueError):
                        unreadable += 1
            except (sqlite3.DatabaseError, UnicodeDecodeError):
                continue
    finally:
        src.close()
    # in the order they were captured: each body's own seq (validated with it), not the
    # row's key, which damage can change without touching the body
    return sorted(found.values(), key=lambda f: f[0].seq), unreadable


_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL,
                                     body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('last_seq', 0), ('dropped', 0), ('corrupt_resets', 0),
    ('sensor_run_s', 0), ('clock_fixed', 0);
INSERT OR IGNORE INTO meta VALUES ('uncaptured', 0);

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
        self._write_trouble: str | None = None  # "disk full", "lock" while capture fails
        self._trouble_logged = 0.0
        self._uncaptured_unsaved = 0  # lost to a full disk, not yet counted in `meta`
        # Rows up to this seq were handed to the MQTT client, which sends them again after
        # any reconnect until acknowledged: the cap must not count them dropped. In memory:
        # after a restart no client holds anything.
        self._handed_upto = 0
        self._db = self._open(synchronous)
        try:
            self._first_reads()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if not is_damage(exc):
                raise
            # damage that quick_check passed, met by the first reads: as at opening
            self._db = self._start_afresh(synchronous, exc)
            self._first_reads()

    def _first_reads(self) -> None:
        self._last_seq = self._checked_last_seq()
        self._rows, self._bytes = self._db.execute(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM readings").fetchone()

    def _checked_last_seq(self) -> int:
        """`last_seq` from `meta`, unless damage that SQLite's checks cannot see (a changed
        value) put it below a stored reading's seq: then, as after a corrupt file, continue
        from epoch milliseconds, above any seq issued, so no seq is reused."""
        row = self._db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        (stored_max,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM readings").fetchone()
        value = row[0] if row is not None else None
        if isinstance(value, int) and value >= stored_max:
            return value
        fresh = max(int(time.time() * 1000), int(stored_max) + 1)
        log.error("outbox %s: last_seq %r is below the stored readings' %d (a damaged value); "
                  "continuing at %d so that no seq is reused", self.path, value, stored_max,
                  fresh)
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (fresh,))
        return fresh

    # --- opening: locked, read-only, damaged -------------------------------------------

    def _open(self, synchronous: str) -> sqlite3.Connection:
        self._check_writable()
        waiting_since: float | None = None
        logged_at = 0.0
        while True:
            try:
                db = self._connect_checked(synchronous)
            except sqlite3.DatabaseError as exc:
                code = sqlite_code(exc)
                free = free_bytes(self.path.parent)
                if code in (SQLITE_BUSY, SQLITE_LOCKED):
                    # Locked is not damaged: another process (a backup, a technician's
                    # sqlite3 shell, a second agent) holds it. Wait; never move it aside.
                    why = f"is locked by another process ({_lock_holders(self.path)})"
                elif code == SQLITE_FULL or (code == SQLITE_IOERR
                                             and 0 <= free < DISK_FULL_MARGIN_BYTES):
                    # SQLite cannot even create its WAL index: wait for space.
                    why = (f"cannot be opened: the disk is full ({free} bytes free on the "
                           f"filesystem of {self.path.parent})")
                elif code in (SQLITE_READONLY, SQLITE_CANTOPEN):
                    self._check_writable()  # says which of file and directory, and why
                    if code == SQLITE_READONLY and self.path.exists():
                        # file and directory writable, and SQLite still will not write:
                        # the header's write version is one it does not know (a damaged
                        # byte), as unreadable to it as a corrupt page
                        return self._start_afresh(synchronous, exc)
                    raise OutboxNotWritable(f"outbox {self.path} cannot be opened for "
                                            f"writing: {exc}") from exc
                elif is_damage(exc):
                    return self._start_afresh(synchronous, exc)
                else:
                    raise
                now = time.monotonic()
                waiting_since = now if waiting_since is None else waiting_since
                if now - logged_at >= LOCKED_LOG_EVERY_S:
                    logged_at = now
                    log.warning("outbox %s %s; waiting (%.0f s so far)", self.path, why,
                                now - waiting_since)
                    notify(f"STATUS=outbox {self.path} {why}; waiting")
                    notify(f"EXTEND_TIMEOUT_USEC={int(2 * LOCKED_LOG_EVERY_S * 1e6)}")
                time.sleep(LOCKED_RETRY_S)
                continue
            if waiting_since is not None:
                log.info("outbox %s opened after %.0f s of waiting", self.path,
                         time.monotonic() - waiting_since)
            return db

    def _connect_checked(self, synchronous: str) -> sqlite3.Connection:
        try:
            db = self._connect(synchronous)
            try:
                (verdict,) = db.execute("PRAGMA quick_check").fetchone()
            except BaseException:
                db.close()
                raise
        except UnicodeDecodeError as exc:
            # bytes that are not UTF-8 where SQLite keeps text (the schema, a check's
            # report): damage that quick_check does not look for
            raise IntegrityFailure(f"text in the file is not UTF-8 ({exc})") from exc
        if verdict != "ok":
            db.close()
            raise IntegrityFailure(f"quick_check: {verdict}")
        return db

    def _check_writable(self) -> None:
        """Raise OutboxNotWritable naming the file and the directory, before touching either.

        WAL mode needs the directory too: SQLite creates `-wal` and `-shm` beside the file.
        """
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxNotWritable(f"outbox directory {directory} cannot be created: "
                                    f"{exc.strerror} (errno {exc.errno})") from exc
        problems = []
        if not os.access(directory, os.W_OK | os.X_OK):
            problems.append(f"directory {directory}: {_why_not_writable(directory)}")
        for p in (self.path, *(self.path.with_name(self.path.name + s) for s in WAL_FILES)):
            if p.exists() and not os.access(p, os.W_OK):
                problems.append(f"file {p}: {_why_not_writable(p)}")
        if problems:
            raise OutboxNotWritable(f"outbox {self.path} is not writable: "
                                    + "; ".join(problems) + "; the file was left untouched")

    def _start_afresh(self, synchronous: str, exc: Exception) -> sqlite3.Connection:
        # A real integrity failure: move the damaged file aside (never delete it), begin
        # again, and carry over every reading that can still be read from it.
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.time_ns()}")
        self.path.rename(aside)
        for suffix in WAL_FILES:
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.rename(aside.with_name(aside.name + suffix))
        salvaged, unreadable = salvage(aside)
        log.error("outbox %s failed its integrity check (%s); moved to %s and started a "
                  "fresh one; salvaged %d readings from it (%d rows unreadable)",
                  self.path, exc, aside, len(salvaged), unreadable)
        db = self._connect(synchronous)
        # The count lived in the damaged file; the files moved aside are the record.
        resets = len(list(self.path.parent.glob(f"{self.path.name}.corrupt-*[0-9]")))
        db.execute("UPDATE meta SET value = ? WHERE key = 'corrupt_resets'", (resets,))
        # The old last_seq is unreadable; epoch ms exceeds any seq issued at under one
        # reading per millisecond, so seqs never repeat (the collector sees one gap).
        last_seq = int(time.time() * 1000)
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO readings (seq, ts_ms, body, boot, mono_ms, synced) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(last_seq + i, r.ts, encode_reading(msgspec.structs.replace(r, seq=last_seq + i)),
              boot, mono, synced)
             for i, (r, boot, mono, synced) in enumerate(salvaged, start=1)])
        db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'",
                   (last_seq + len(salvaged),))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('salvaged', ?)", (len(salvaged),))
        db.execute("COMMIT")
        return db

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.executescript(_SCHEMA)
            have = {row[1] for row in db.execute("PRAGMA table_info(readings)")}
            for name, decl in _EXTRA_COLUMNS.items():
                if name not in have:
                    db.execute(f"ALTER TABLE readings ADD COLUMN {name} {decl}")
        except BaseException:
            db.close()
            raise
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
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO readings (seq, ts_ms, body, boot, mono_ms, synced) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(r.seq, r.ts, body, boot, mono, synced)
                     for r, body, boot, mono, synced in rows],
                )
                db.execute("UPDATE meta SET value=? WHERE key='last_seq'", (rows[-1][0].seq,))
                if self._uncaptured_unsaved:
                    db.execute("UPDATE meta SET value = value + ? WHERE key='uncaptured'",
                               (self._uncaptured_unsaved,))
                added_bytes = sum(len(body) for _, body, *_ in rows)
                dropped_rows, dropped_bytes = self._enforce_cap(
                    self._rows + len(rows), self._bytes + added_bytes)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            self._last_seq = rows[0][0].seq - 1
            if not self._cannot_write(exc, len(rows)):
                raise
            return 0
        except BaseException:
            self._last_seq = rows[0][0].seq - 1
            raise
        if self._write_trouble is not None:
            log.warning("outbox %s: capturing again (%s); %d readings could not be "
                        "captured meanwhile", self.path, _TROUBLE_OVER[self._write_trouble],
                        self._uncaptured_unsaved)
            self._write_trouble = None
        self._uncaptured_unsaved = 0
        self._rows += len(rows) - dropped_rows
        self._bytes += added_bytes - dropped_bytes
        return len(rows)

    def _cannot_write(self, exc: sqlite3.Error, lost: int) -> bool:
        """A full disk or a lock while capturing: count the readings lost, say so, go on.

        Returns False for any other error (the caller raises it). What is already in the
        outbox stays readable, so the publisher keeps draining it meanwhile.
        """
        code = sqlite_code(exc)
        free = free_bytes(self.path.parent)
        if code == SQLITE_FULL or (code == SQLITE_IOERR and 0 <= free < DISK_FULL_MARGIN_BYTES):
            trouble = "disk full"
            detail = (f"the disk is full: {free} bytes free on the filesystem of "
                      f"{self.path.parent}")
        elif code in (SQLITE_BUSY, SQLITE_LOCKED):
            trouble = "lock"
            detail = f"it is locked by another process ({_lock_holders(self.path)})"
        else:
            return False
        self._uncaptured_unsaved += lost
        now = time.monotonic()
        if self._write_trouble != trouble or now - self._trouble_logged >= DISK_FULL_LOG_EVERY_S:
            log.error("outbox %s: cannot capture, %s (%s); %d readings not captured so far, "
                      "still publishing the %d stored", self.path, detail, exc,
                      self._uncaptured_unsaved, self._rows)
            self._trouble_logged = now
        self._write_trouble = trouble
        return True

    @property
    def write_trouble(self) -> str | None:
        """Why readings cannot be captured right now ("disk full", "lock"), or None."""
        with self._lock:
            return self._write_trouble

    def uncaptured(self) -> int:
        """Readings taken but never committed (disk full, locked), since the outbox began."""
        with self._lock:
            (saved,) = self._db.execute(
                "SELECT coalesce(max(value), 0) FROM meta WHERE key='uncaptured'").fetchone()
            return int(saved) + self._uncaptured_unsaved

    def _enforce_cap(self, rows: int, nbytes: int) -> tuple[int, int]:
        """Drop the oldest unsent rows beyond the caps, counted; inside the open transaction.

        The caps bound the readings waiting to be sent. Rows already handed to the MQTT
        client are not among them: the client sends them again after any reconnect until
        acknowledged, so dropping one would count as lost a reading that is then stored.
        The outbox may hold that much more (at most `window` batches of `batch_max`).
        """
        over_rows = rows - self.max_rows
        over_bytes = nbytes - self.max_bytes if self.max_bytes else 0
        if over_rows <= 0 and over_bytes <= 0:
            return 0, 0
        if self._handed_upto:
            handed, handed_bytes = self._db.execute(
                "SELECT count(*), coalesce(sum(length(body)), 0) FROM readings WHERE seq <= ?",
                (self._handed_upto,)).fetchone()
            over_rows, over_bytes = over_rows - handed, over_bytes - handed_bytes
            if over_rows <= 0 and over_bytes <= 0:
                return 0, 0
        first_seq = drop_seq = None
        dropped = dropped_bytes = 0
        for seq, size in self._db.execute(
            "SELECT seq, length(body) FROM readings WHERE seq > ? ORDER BY seq",
            (self._handed_upto,),
        ):
            if dropped >= over_rows and dropped_bytes >= over_bytes:
                break
            drop_seq, dropped, dropped_bytes = seq, dropped + 1, dropped_bytes + size
            first_seq = first_seq or seq
        if drop_seq is None:
            return 0, 0
        self._db.execute("DELETE FROM readings WHERE seq BETWEEN ? AND ?", (first_seq, drop_seq))
        self._db.execute("UPDATE meta SET value = value + ? WHERE key='dropped'", (dropped,))
        log.warning("outbox full: dropped the %d oldest readings not yet sent (seq %s to %s)",
                    dropped, first_seq, drop_seq)
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
            return self._oldest_raw(limit, after_seq)

    def hand_over(self, limit: int, after_seq: int = 0) -> list[tuple[int, bytes]]:
        """`oldest_raw` for the publisher: from now on the cap keeps these rows.

        Read and marked under one lock, so the cap cannot drop a row between the read
        and the publish.
        """
        with self._lock:
            rows = self._oldest_raw(limit, after_seq)
            if rows:
                self._handed_upto = max(self._handed_upto, rows[-1][0])
        return rows

    def _oldest_raw(self, limit: int, after_seq: int) -> list[tuple[int, bytes]]:
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
            try:
                return self._delete(seqs)
            except sqlite3.OperationalError as exc:
                if sqlite_code(exc) not in (SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY,
                                            SQLITE_LOCKED):
                    raise
                raise OutboxWriteFailed(
                    f"cannot delete {len(seqs)} acknowledged readings from outbox "
                    f"{self.path} ({exc}; {free_bytes(self.path.parent)} bytes free)") from exc

    def _delete(self, seqs: list[int]) -> int:
        lo, hi = min(seqs), max(seqs)
        if hi - lo + 1 == len(seqs):  # a contiguous batch: one range delete
            (nbytes,) = self._db.execute(
                "SELECT coalesce(sum(length(body)), 0) FROM readings "
                "WHERE seq BETWEEN ? AND ?", (lo, hi)).fetchone()
            cur = self._db.execute("DELETE FROM readings WHERE seq BETWEEN ? AND ?", (lo, hi))
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
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "UPDATE readings SET ts_ms = ?, body = ?, synced = 1 WHERE seq = ?",
                    updates)
                self._db.execute("UPDATE meta SET value = value + ? WHERE key='clock_fixed'",
                                 (len(updates),))
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                # They keep their clock_unsynced flag: sent as taken, never wrong.
                log.error("clock synchronised, but the %d readings taken before cannot be "
                          "restamped in outbox %s: %s", len(updates), self.path, exc)
                return 0
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

    def set_counter(self, key: str, value: int) -> bool:
        """Store a counter; False if the disk is full or the file locked (try later)."""
        with self._lock:
            try:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            except sqlite3.OperationalError as exc:
                if sqlite_code(exc) not in (SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY,
                                            SQLITE_LOCKED):
                    raise
                return False
            return True

    def close(self) -> None:
        with self._lock:
            self._commit()
            self._db.close()
