"""Checkpoint of the collector's own state in SQLite: per-device seq and hourly sums.

Written after a batch is stored and before it is acknowledged, in one transaction, so
after a crash the collector drops exactly the repeats the broker redelivers and counts
each reading once in its hour.

Only what a batch changed is written: one `seqs` row per touched device (its gaps as
ranges, bounded by `[gaps] max_ranges`, so a device with one gap or an outage of a
thousand readings costs the same), one `hourly` row per touched hour. Rows past their
use go: a forgotten device's `seqs` row with the batch that forgot it, `hourly` rows
older than the retention a few thousand per checkpoint (never one long delete).

The commit is what makes a batch's state durable (WAL, `synchronous=NORMAL`: it survives
a crash of the process), and the batch is acked only after it. It runs on a thread of its
own, one batch after another in seal order (`save_in_background`): with the disk busy
(a registry file rewritten beside it) one commit waited 0.7 s, and the pipeline's thread
goes on building batches meanwhile. Copying
the WAL back into the database file (SQLite's checkpoint: up to 4 MB written and an fsync)
is only housekeeping, and SQLite would do it inside a commit every ~1000 pages: at
100,000 devices a batch touches hundreds of pages, so every few batches a commit took the
copy. A thread of its own with its own connection does it instead, every second.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from collector.aggregates import FIELDS, Agg, HourlyAggregates, Key
from collector.dedup import DeviceSeq, SeqTracker


@dataclass(frozen=True)
class Snapshot:
    seq_rows: list[tuple[str, int, int, int, int, str]]
    hour_rows: list[tuple[str, int, str, str, str]]
    forgotten: list[str] = field(default_factory=list)


SCHEMA = """
CREATE TABLE IF NOT EXISTS seqs (device TEXT PRIMARY KEY, max_seq INTEGER, floor INTEGER,
                                 received INTEGER, last_ms INTEGER, gaps TEXT);
CREATE TABLE IF NOT EXISTS hourly (device TEXT, hour INTEGER, sums TEXT, counts TEXT,
                                   maxes TEXT, PRIMARY KEY (device, hour));
CREATE INDEX IF NOT EXISTS hourly_by_hour ON hourly (hour);
"""
log = logging.getLogger(__name__)

#: how often the WAL is copied into the database file, off the pipeline's thread
WAL_CHECKPOINT_EVERY_S = 1.0
#: the WAL file is cut back to this size when it starts over (bytes)
WAL_SIZE_LIMIT = 16 * 2**20
#: the writer's page cache (KiB; allocated as used): the tables of 100,000 devices fit
CACHE_KIB = 64 * 1024
#: hourly rows deleted per checkpoint at most: retention never holds a batch up for long
PRUNE_ROWS_PER_SAVE = 2000


def gaps_json(d: DeviceSeq) -> str:
    """A device's gaps as `[[lo, hi, opened_ms], ...]`."""
    return json.dumps([[a, b, t] for a, b, t in zip(d.lo, d.hi, d.opened, strict=True)],
                      separators=(",", ":"))


def device_seq(max_seq: int, floor: int, received: int, last_ms: int, gaps: str) -> DeviceSeq:
    d = DeviceSeq(max_seq=max_seq, floor=floor, received=received, last_ms=last_ms)
    for lo, hi, opened in json.loads(gaps):
        d.open_gap(lo, hi, opened)
    return d


def ranges_of(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted distinct ints as inclusive ranges (the old checkpoint kept every seq)."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


class StateStore:
    def __init__(self, path: Path,
                 wal_checkpoint_every_s: float | None = WAL_CHECKPOINT_EVERY_S) -> None:
        """`wal_checkpoint_every_s` None: SQLite copies the WAL back within commits."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit survives a process crash (kill -9); the spool is what is fsynced.
        self.db.execute("PRAGMA synchronous=NORMAL")
        # A batch touches pages all over the tables (one row per device, devices spread by
        # id): with SQLite's default 2 MB cache each is read back from the file first.
        self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self.db.executescript(SCHEMA)
        # Each device's newest hour in the table or in a checkpoint on its way there;
        # only the pipeline's thread reads and writes it.
        self._newest_hour: dict[str, int] = {}
        # Checkpoints are committed here, one at a time, in the order they were asked for.
        self._saver = ThreadPoolExecutor(1, thread_name_prefix="state-checkpoint")
        self._last_save: Future[None] | None = None
        self._db_lock = threading.Lock()  # one transaction at a time on the connection
        self._prune_lock = threading.Lock()
        self.prune_before_hour = 0  # hourly rows before this hour go, a few per save
        self.pruned_rows = 0
        self.wal_checkpoints = 0  # done by the checkpoint thread
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if wal_checkpoint_every_s is not None:
            self.db.execute("PRAGMA wal_autocheckpoint=0")  # never inside a commit
            self.db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            self._checkpointer = threading.Thread(
                target=self._checkpoint_wal, args=(path, wal_checkpoint_every_s),
                name="state-wal-checkpoint", daemon=True)
            self._checkpointer.start()

    def _checkpoint_wal(self, path: Path, every_s: float) -> None:
        """Copy committed WAL frames into the database file (PASSIVE: never waits for, or
        holds up, the pipeline's commits; what a commit wrote is durable already)."""
        db = sqlite3.connect(path, timeout=5)
        try:
            while not self._stop.wait(every_s):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.wal_checkpoints += 1
                except sqlite3.Error as exc:  # the WAL grows meanwhile; said, then retried
                    log.warning("checkpointing the WAL of %s failed: %s", path, exc)
        finally:
            db.close()

    def _migrate_seq_sets(self, now_ms: int) -> None:
        """A checkpoint from before gap ranges (table `seq`, every missing seq listed)."""
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                               "name='seq'").fetchone():
            return
        rows = []
        for device, max_seq, floor, received, missing in self.db.execute("SELECT * FROM seq"):
            d = DeviceSeq(max_seq=max_seq, floor=floor, received=received, last_ms=now_ms)
            for lo, hi in ranges_of(json.loads(missing)):
                d.open_gap(lo, hi, now_ms)
            rows.append((device, max_seq, floor, received, now_ms, gaps_json(d)))
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO seqs VALUES (?,?,?,?,?,?)", rows)
        self.db.execute("DROP TABLE seq")
        self.db.execute("COMMIT")

    def restore(self, seqs: SeqTracker, aggs: HourlyAggregates) -> int:
        self._migrate_seq_sets(int(seqs.clock() * 1000))
        n = 0
        # oldest heard first: the tracker keeps its keys in that order (for forgetting)
        for device, *row in self.db.execute("SELECT * FROM seqs ORDER BY last_ms"):
            seqs.restore_device(device, device_seq(*row))
            n += 1
        # Readings arrive mostly in time order: an hour after a device's newest saved hour
        # cannot be in the table, so only older hours cost a lookup.
        self._newest_hour = dict(self.db.execute(
            "SELECT device, max(hour) FROM hourly GROUP BY device").fetchall())
        aggs.load_missing = self.load_hour
        aggs.on_expire = self.prune_hours_before
        return n

    def load_hour(self, key: Key) -> Agg | None:
        newest = self._newest_hour.get(key[0])
        if newest is None or key[1] > newest:
            return None
        pending = self._last_save
        if pending is not None:  # the hour may be in a checkpoint not yet committed
            pending.exception()  # waits; a failed checkpoint reads as "not in the table"
        with self._db_lock:
            row = self.db.execute(
                "SELECT sums, counts, maxes FROM hourly WHERE device=? AND hour=?",
                key).fetchone()
        if row is None:
            return None
        sums, counts = json.loads(row[0]), json.loads(row[1])
        maxes = [float(x) for x in json.loads(row[2])]
        # an hour saved before a field was added to the aggregates has none of it yet
        pad = max(0, len(FIELDS) - len(sums))
        return Agg(sums + [0.0] * pad, counts + [0] * pad, maxes + [float("-inf")] * pad)

    @staticmethod
    def snapshot(seqs: SeqTracker, devices: list[str], aggs: HourlyAggregates,
                 hours: list[Key]) -> Snapshot:
        """Rows for the state as of a sealed batch (taken before the next batch changes it)."""
        seq_rows = []
        for device in devices:
            d = seqs.devices.get(device)
            if d is not None:
                seq_rows.append((device, d.max_seq, d.floor, d.received, d.last_ms,
                                 gaps_json(d)))
        hour_rows = []
        for key in hours:
            a = aggs.hours.get(key)
            if a is not None:
                hour_rows.append((key[0], key[1], json.dumps(a.sums), json.dumps(a.counts),
                                  json.dumps([m if m != float("-inf") else -1e308
                                              for m in a.maxes])))
        return Snapshot(seq_rows, hour_rows, seqs.take_forgotten())

    def save(self, snap: Snapshot) -> None:
        """Commit a checkpoint now, on the caller's thread."""
        self._note_hours(snap)
        self._commit(snap)

    def save_in_background(self, snap: Snapshot) -> Future[None]:
        """Commit a checkpoint on the checkpoint thread, after those asked for before it;
        the batch it belongs to may be acked once the future is done without error."""
        self._note_hours(snap)
        self._last_save = self._saver.submit(self._commit, snap)
        return self._last_save

    def _note_hours(self, snap: Snapshot) -> None:
        for device, hour, *_ in snap.hour_rows:
            if hour > self._newest_hour.get(device, -1):
                self._newest_hour[device] = hour

    def _commit(self, snap: Snapshot) -> None:
        with self._db_lock:
            try:
                self._write(snap)
            except BaseException:
                if self.db.in_transaction:  # else the next checkpoint's BEGIN fails too
                    self.db.execute("ROLLBACK")
                raise

    def _write(self, snap: Snapshot) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO seqs VALUES (?,?,?,?,?,?)", snap.seq_rows)
        self.db.executemany("INSERT OR REPLACE INTO hourly VALUES (?,?,?,?,?)", snap.hour_rows)
        if snap.forgotten:
            self.db.executemany("DELETE FROM seqs WHERE device = ?",
                                [(k,) for k in snap.forgotten])
        with self._prune_lock:
            before = self.prune_before_hour
        if before:
            cur = self.db.execute(
                "DELETE FROM hourly WHERE rowid IN (SELECT rowid FROM hourly WHERE hour < ?"
                " LIMIT ?)", (before, PRUNE_ROWS_PER_SAVE))
            self.pruned_rows += cur.rowcount
            if cur.rowcount < PRUNE_ROWS_PER_SAVE:
                with self._prune_lock:  # done until the next hour's cutoff, unless it came
                    if self.prune_before_hour == before:
                        self.prune_before_hour = 0
        self.db.execute("COMMIT")

    def prune_hours_before(self, hour_ms: int) -> None:
        """Hourly rows of hours before `hour_ms` are past their use: delete them, a few
        thousand with each following checkpoint."""
        with self._prune_lock:
            self.prune_before_hour = hour_ms

    def close(self) -> None:
        self._saver.shutdown()  # the checkpoints asked for are committed first
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        self.db.close()  # the last connection to close copies what is left of the WAL
