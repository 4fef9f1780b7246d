"""Checkpoint of the collector's own state in SQLite: per-device seq and hourly sums.

Written after a batch is stored and before it is acknowledged, in one transaction, so
after a crash the collector drops exactly the repeats the broker redelivers and counts
each reading once in its hour.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from collector.aggregates import FIELDS, Agg, HourlyAggregates, Key
from collector.dedup import DeviceSeq, SeqTracker


@dataclass(frozen=True)
class Snapshot:
    seq_rows: list[tuple[str, int, int, int, str]]
    hour_rows: list[tuple[str, int, str, str, str]]


SCHEMA = """
CREATE TABLE IF NOT EXISTS seq (device TEXT PRIMARY KEY, max_seq INTEGER, floor INTEGER,
                                received INTEGER, missing TEXT);
CREATE TABLE IF NOT EXISTS hourly (device TEXT, hour INTEGER, sums TEXT, counts TEXT,
                                   maxes TEXT, PRIMARY KEY (device, hour));
"""


class StateStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit survives a process crash (kill -9); the spool is what is fsynced.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._newest_hour: dict[str, int] = {}

    def restore(self, seqs: SeqTracker, aggs: HourlyAggregates) -> int:
        n = 0
        for device, max_seq, floor, received, missing in self.db.execute("SELECT * FROM seq"):
            seqs.devices[device] = DeviceSeq(max_seq, floor, set(json.loads(missing)), received)
            n += 1
        # Readings arrive mostly in time order: an hour after a device's newest saved hour
        # cannot be in the table, so only older hours cost a lookup.
        self._newest_hour = dict(self.db.execute(
            "SELECT device, max(hour) FROM hourly GROUP BY device").fetchall())
        aggs.load_missing = self.load_hour
        return n

    def load_hour(self, key: Key) -> Agg | None:
        newest = self._newest_hour.get(key[0])
        if newest is None or key[1] > newest:
            return None
        row = self.db.execute("SELECT sums, counts, maxes FROM hourly WHERE device=? AND hour=?",
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
                seq_rows.append((device, d.max_seq, d.floor, d.received,
                                 json.dumps(sorted(d.missing))))
        hour_rows = []
        for key in hours:
            a = aggs.hours.get(key)
            if a is not None:
                hour_rows.append((key[0], key[1], json.dumps(a.sums), json.dumps(a.counts),
                                  json.dumps([m if m != float("-inf") else -1e308
                                              for m in a.maxes])))
        return Snapshot(seq_rows, hour_rows)

    def save(self, snap: Snapshot) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO seq VALUES (?,?,?,?,?)", snap.seq_rows)
        self.db.executemany("INSERT OR REPLACE INTO hourly VALUES (?,?,?,?,?)", snap.hour_rows)
        self.db.execute("COMMIT")
        for device, hour, *_ in snap.hour_rows:
            if hour > self._newest_hour.get(device, -1):
                self._newest_hour[device] = hour

    def close(self) -> None:
        self.db.close()
