"""SQLite persistence: alert state, the notification outbox, group send times, silences.

A decision (an outbox row) and the state change that caused it commit in one transaction,
so a restart neither loses a decided notification nor decides it again. WAL keeps readers
(delivery workers) off the writer's back.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from collector.alerting.model import Alert, Message

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT NOT NULL, subject TEXT NOT NULL,
    state TEXT NOT NULL, value REAL NOT NULL, severity TEXT NOT NULL, labels TEXT NOT NULL,
    annotations TEXT NOT NULL, started_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
    resolved_ms INTEGER, acked_by TEXT, acked_ms INTEGER, level INTEGER NOT NULL,
    level_since_ms INTEGER NOT NULL, event_seq INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (state, resolved_ms);
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY, channel TEXT NOT NULL, recipient TEXT NOT NULL, kind TEXT NOT NULL,
    text TEXT NOT NULL, event TEXT NOT NULL, retain_key TEXT NOT NULL,
    created_ms INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL, last_error TEXT,
    done_ms INTEGER);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (channel, status, next_ms);
CREATE TABLE IF NOT EXISTS group_sends (
    receiver TEXT NOT NULL, group_key TEXT NOT NULL, last_ms INTEGER NOT NULL,
    fingerprint TEXT NOT NULL, PRIMARY KEY (receiver, group_key));
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY AUTOINCREMENT, matchers TEXT NOT NULL, starts_ms INTEGER NOT NULL,
    ends_ms INTEGER NOT NULL, author TEXT NOT NULL, reason TEXT NOT NULL);
"""


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoint
        self.db.executescript(SCHEMA)
        self.lock = threading.RLock()
        self._depth = 0
        #: tables of other parts whose rows belong to an alert (an `alert_id` column, e.g.
        #: the work orders' steps and photos): purged with their alert, sized with the rest
        self.alert_tables: list[str] = []
        #: tables whose rows end at a time of their own (table -> its end column, e.g.
        #: expired sign-in links): deleted once ended before the resolved retention
        self.expiring_tables: dict[str, str] = {"silences": "ends_ms"}
        self.purged_rows: dict[str, int] = {}  # per attached or expiring table, since start

    def attach_expiring_table(self, table: str, end_column: str) -> None:
        """`table`'s rows are over at `end_column` (ms): they go once that is older than
        the resolved retention (`purge_resolved`), and the table is counted by `sizes`."""
        self.expiring_tables[table] = end_column

    def attach_alert_table(self, table: str) -> None:
        """`table` (with an `alert_id` column) follows its alerts' retention: its rows go
        when their alert is purged (`purge_resolved`), and it is counted by `sizes`."""
        if table not in self.alert_tables:
            self.alert_tables.append(table)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction (nested calls join the outer one)."""
        with self.lock:
            self._depth += 1
            if self._depth == 1:
                self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                if self._depth == 1:
                    self.db.execute("ROLLBACK")
                raise
            else:
                if self._depth == 1:
                    self.db.execute("COMMIT")
            finally:
                self._depth -= 1

    # -- alerts --------------------------------------------------------------------------
    def insert_alert(self, a: Alert) -> int:
        with self.tx() as db:
            cur = db.execute(
                "INSERT INTO alerts (rule, subject, state, value, severity, labels, annotations,"
                " started_ms, updated_ms, resolved_ms, acked_by, acked_ms, level, level_since_ms)"
                # SQLite stores a NaN as NULL: a value a rule could not compute is kept as 0
                " VALUES (?,?,?,coalesce(?, 0.0),?,?,?,?,?,?,?,?,?,?)",
                (a.rule, a.subject, a.state, a.value, a.severity, json.dumps(a.labels),
                 json.dumps(a.annotations), a.started_ms, a.updated_ms, a.resolved_ms,
                 a.acked_by, a.acked_ms, a.level, a.level_since_ms))
            return int(cur.lastrowid or 0)

    def update_alert(self, a: Alert, event_seq: int) -> None:
        with self.tx() as db:
            db.execute(
                # a NaN (bound as NULL: the rule had no value, e.g. a window gone empty at
                # resolve) keeps the last value instead of breaking the NOT NULL column
                "UPDATE alerts SET state=?, value=coalesce(?, value), labels=?, updated_ms=?,"
                " resolved_ms=?,"
                " acked_by=?, acked_ms=?, level=?, level_since_ms=?, event_seq=? WHERE id=?",
                (a.state, a.value, json.dumps(a.labels), a.updated_ms, a.resolved_ms,
                 a.acked_by, a.acked_ms, a.level, a.level_since_ms, event_seq, a.id))

    def load_alerts(self, resolved_after_ms: int) -> list[tuple[Alert, int]]:
        """Open alerts and those resolved recently enough to be reopened."""
        return self._alerts("state = 'firing' OR resolved_ms >= ?", (resolved_after_ms,))

    def alerts_between(self, start_ms: int, end_ms: int) -> list[Alert]:
        """Alerts open at any time in [start, end): opened before its end and not resolved
        before its start (the daily report's alert section)."""
        return [a for a, _ in self._alerts(
            "started_ms < ? AND (resolved_ms IS NULL OR resolved_ms >= ?)", (end_ms, start_ms))]

    def _alerts(self, where: str, args: tuple[int, ...]) -> list[tuple[Alert, int]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT id, rule, subject, state, value, severity, labels, annotations,"
                " started_ms, updated_ms, resolved_ms, acked_by, acked_ms, level,"
                f" level_since_ms, event_seq FROM alerts WHERE {where} ORDER BY id",
                args).fetchall()
        return [(Alert(id=r[0], rule=r[1], subject=r[2], state=r[3], value=r[4], severity=r[5],
                       labels=json.loads(r[6]), annotations=json.loads(r[7]), started_ms=r[8],
                       updated_ms=r[9], resolved_ms=r[10], acked_by=r[11], acked_ms=r[12],
                       level=r[13], level_since_ms=r[14]), r[15]) for r in rows]

    # -- outbox --------------------------------------------------------------------------
    def enqueue(self, messages: list[Message], now_ms: int) -> int:
        """Decide messages; an id already decided is ignored (never sent twice)."""
        with self.tx() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO outbox (id, channel, recipient, kind, text, event,"
                " retain_key, created_ms, next_ms) VALUES (?,?,?,?,?,?,?,?,?)",
                [(m.id, m.channel, m.recipient, m.kind, m.text,
                  json.dumps(m.event, ensure_ascii=False), m.retain_key, now_ms, 0)
                 for m in messages])  # next_ms 0: due at once, whatever clock decided it
            return db.total_changes - before

    def due(self, channel: str, now_ms: int, limit: int = 50) -> list[tuple[Message, int]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT id, channel, recipient, kind, text, event, retain_key, attempts"
                " FROM outbox WHERE channel = ? AND status = 'pending' AND next_ms <= ?"
                " ORDER BY created_ms, rowid LIMIT ?", (channel, now_ms, limit)).fetchall()
        return [(Message(id=r[0], channel=r[1], recipient=r[2], kind=r[3], text=r[4],
                         event=json.loads(r[5]), retain_key=r[6]), r[7]) for r in rows]

    def next_due_ms(self, channel: str) -> int | None:
        with self.lock:
            row = self.db.execute("SELECT MIN(next_ms) FROM outbox WHERE channel = ? AND"
                                  " status = 'pending'", (channel,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def mark_sent(self, msg_id: str, now_ms: int) -> None:
        with self.tx() as db:
            db.execute("UPDATE outbox SET status='sent', done_ms=?, attempts=attempts+1"
                       " WHERE id=?", (now_ms, msg_id))

    def reschedule(self, msg_id: str, next_ms: int, attempts: int, error: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE outbox SET next_ms=?, attempts=?, last_error=? WHERE id=?",
                       (next_ms, attempts, error, msg_id))

    def mark_dead(self, msg_id: str, now_ms: int, attempts: int, error: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE outbox SET status='dead', done_ms=?, attempts=?, last_error=?"
                       " WHERE id=?", (now_ms, attempts, error, msg_id))

    def outbox_rows(self, channel: str | None = None) -> list[dict[str, object]]:
        """For tests and operators: every decided message with its status."""
        q = "SELECT id, channel, recipient, kind, status, attempts, last_error FROM outbox"
        args: tuple[str, ...] = ()
        if channel is not None:
            q += " WHERE channel = ?"
            args = (channel,)
        with self.lock:
            rows = self.db.execute(q + " ORDER BY rowid", args).fetchall()
        keys = ("id", "channel", "recipient", "kind", "status", "attempts", "last_error")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def purge(self, before_ms: int) -> int:
        """Forget delivered and dead messages finished before `before_ms` (retention)."""
        with self.tx() as db:
            cur = db.execute("DELETE FROM outbox WHERE status IN ('sent', 'dead')"
                             " AND done_ms < ?", (before_ms,))
            return cur.rowcount

    def purge_resolved(self, before_ms: int) -> tuple[int, int]:
        """Retention: forget alerts resolved before `before_ms`, the rows of attached
        tables that belonged to them, rows of expiring tables (silences, sign-in links)
        that ended before it, and group send times older than it (their history is in
        InfluxDB); returns (alerts, group sends)."""
        with self.tx() as db:
            alerts = db.execute("DELETE FROM alerts WHERE state = 'resolved'"
                                " AND resolved_ms < ?", (before_ms,)).rowcount
            for table in self.alert_tables:
                # whatever has no alert any more: also rows left by an earlier version
                # that purged alerts alone
                n = db.execute(f"DELETE FROM {table} WHERE alert_id NOT IN"
                               " (SELECT id FROM alerts)").rowcount
                self.purged_rows[table] = self.purged_rows.get(table, 0) + n
            for table, end_column in self.expiring_tables.items():
                n = db.execute(f"DELETE FROM {table} WHERE {end_column} < ?",
                               (before_ms,)).rowcount
                self.purged_rows[table] = self.purged_rows.get(table, 0) + n
            sends = db.execute("DELETE FROM group_sends WHERE last_ms < ?",
                               (before_ms,)).rowcount
            return alerts, sends

    def sizes(self) -> dict[str, int]:
        """Rows per table (the store-size gauge)."""
        with self.lock:
            return {t: int(self.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                    for t in ("alerts", "outbox", "group_sends",
                              *self.expiring_tables, *self.alert_tables)}

    # -- grouping ------------------------------------------------------------------------
    def group_sends(self) -> dict[tuple[str, str], tuple[int, str]]:
        with self.lock:
            rows = self.db.execute("SELECT receiver, group_key, last_ms, fingerprint"
                                   " FROM group_sends").fetchall()
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}

    def set_group_sent(self, receiver: str, group_key: str, last_ms: int, fp: str) -> None:
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO group_sends VALUES (?,?,?,?)",
                       (receiver, group_key, last_ms, fp))

    # -- silences ------------------------------------------------------------------------
    def add_silence(self, matchers: dict[str, str], starts_ms: int, ends_ms: int,
                    author: str, reason: str) -> int:
        with self.tx() as db:
            cur = db.execute("INSERT INTO silences (matchers, starts_ms, ends_ms, author, reason)"
                             " VALUES (?,?,?,?,?)", (json.dumps(matchers, ensure_ascii=False),
                                                     starts_ms, ends_ms, author, reason))
            return int(cur.lastrowid or 0)

    def silences(self) -> list[tuple[int, dict[str, str], int, int, str, str]]:
        with self.lock:
            rows = self.db.execute("SELECT id, matchers, starts_ms, ends_ms, author, reason"
                                   " FROM silences").fetchall()
        return [(r[0], json.loads(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    def close(self) -> None:
        with self.lock:
            self.db.close()
