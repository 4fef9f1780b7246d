"""The durable quarantine: rejected readings and messages an operator can list and re-drive.

Beside the state store (`quarantine.db` next to `state.db`). A reading that fails
validation is kept here with its device, outbox epoch, boot, reason and JSON, so that
after a range limit is fixed `airgrid-collector quarantine redrive` can send it again.
A message the collector could not process at all is kept whole.

It also counts processing attempts so that no message can stop ingestion: a sealed
batch's message keys are recorded before its write and cleared once it is acked. Keys
still recorded at start-up belong to a batch that never completed (the collector crashed
on it): each gets one more attempt. A message with an earlier failed attempt is
processed alone, and after `MAX_ATTEMPTS` it is quarantined without being processed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: Attempts (crashes while it was in flight) after which a message is quarantined unread.
MAX_ATTEMPTS = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    device TEXT NOT NULL, topic TEXT NOT NULL, epoch TEXT NOT NULL, boot TEXT NOT NULL,
    reason TEXT NOT NULL, detail TEXT NOT NULL, body BLOB NOT NULL, redriven_ms INTEGER);
CREATE INDEX IF NOT EXISTS quarantine_pending ON quarantine (redriven_ms, reason);
CREATE TABLE IF NOT EXISTS inflight (id INTEGER PRIMARY KEY, keys TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (key TEXT PRIMARY KEY, attempts INTEGER NOT NULL);
"""


def message_key(topic: str, payload: bytes) -> str:
    """A message's identity for counting attempts: its topic (so its device) and bytes.
    SHA-256, cut to 96 bits: with the CPU's SHA instructions it costs less than half of
    BLAKE2b here (hashlib's BLAKE2b has none), and it runs for every message."""
    h = hashlib.sha256(topic.encode())
    h.update(b"\0")
    h.update(payload)
    return h.hexdigest()[:24]


@dataclass(frozen=True)
class Entry:
    id: int
    at_ms: int
    kind: str  # "reading" or "message"
    device: str
    topic: str
    epoch: str
    boot: str
    reason: str
    detail: str
    body: bytes
    redriven_ms: int | None

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "at_ms": self.at_ms, "kind": self.kind, "device": self.device,
                "topic": self.topic, "epoch": self.epoch, "boot": self.boot,
                "reason": self.reason, "detail": self.detail,
                "body": self.body.decode("utf-8", "backslashreplace"),
                "redriven_ms": self.redriven_ms}


def path_beside(state_file: Path) -> Path:
    return state_file.with_name("quarantine.db")


class Quarantine:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.suspects: dict[str, int] = {}

    # --- the quarantine ----------------------------------------------------------------

    def add(self, kind: str, device: str, topic: str, reason: str, detail: str, body: bytes,
            epoch: str = "", boot: str = "") -> None:
        self.add_many([(kind, device, topic, reason, detail, body, epoch, boot)])

    def add_many(self, rows: Iterable[tuple[str, str, str, str, str, bytes, str, str]]
                 ) -> None:
        now = int(time.time() * 1000)
        self.db.executemany(
            "INSERT INTO quarantine (at_ms, kind, device, topic, reason, detail, body, epoch,"
            " boot) VALUES (?,?,?,?,?,?,?,?,?)", [(now, *r) for r in rows])

    def entries(self, pending_only: bool = True) -> list[Entry]:
        where = "WHERE redriven_ms IS NULL" if pending_only else ""
        rows = self.db.execute(
            "SELECT id, at_ms, kind, device, topic, epoch, boot, reason, detail, body,"
            f" redriven_ms FROM quarantine {where} ORDER BY id").fetchall()
        return [Entry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bytes(r[9]), r[10])
                for r in rows]

    def mark_redriven(self, ids: list[int]) -> None:
        now = int(time.time() * 1000)
        self.db.executemany("UPDATE quarantine SET redriven_ms=? WHERE id=?",
                            [(now, i) for i in ids])

    def forget_attempts(self, keys: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM attempts WHERE key=?", [(k,) for k in keys])

    # --- attempts ------------------------------------------------------------------------

    def recover(self) -> int:
        """At start-up: batches left in flight by a crash count one attempt per message.
        Returns how many messages are suspects (processed alone, or quarantined)."""
        self.db.execute("BEGIN IMMEDIATE")
        for (keys,) in self.db.execute("SELECT keys FROM inflight").fetchall():
            self.db.executemany(
                "INSERT INTO attempts VALUES (?, 1) "
                "ON CONFLICT(key) DO UPDATE SET attempts = attempts + 1",
                [(k,) for k in json.loads(keys)])
        self.db.execute("DELETE FROM inflight")
        self.db.execute("COMMIT")
        self.suspects = dict(self.db.execute("SELECT key, attempts FROM attempts").fetchall())
        return len(self.suspects)

    def begin(self, keys: list[str]) -> int:
        """A batch of these messages is about to be written: one row, cleared by `end`."""
        cur = self.db.execute("INSERT INTO inflight (keys) VALUES (?)", (json.dumps(keys),))
        return int(cur.lastrowid or 0)

    def end(self, batch_id: int, keys: list[str]) -> None:
        """The batch is stored and acked: its messages are no longer suspects."""
        self.db.execute("DELETE FROM inflight WHERE id=?", (batch_id,))
        done = [k for k in keys if k in self.suspects]
        if done:
            self.forget_attempts(done)
            for k in done:
                self.suspects.pop(k, None)

    def close(self) -> None:
        self.db.close()
