"""Personal sign-in links: a random token per link, bound to one worker, expiring, revocable.

Only the token's SHA-256 is stored (a copied database does not hand out sign-ins); the
token carries 192 random bits, so a plain hash is as hard to reverse as the token is to
guess. Every request looks its token up here, so a revocation (`airgrid-admin
worker-revoke`) or an expiry takes effect on the next request. The table lives in the
alerting state database; the admin command and the collector both open it (SQLite WAL).
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from collector.workorders.errors import NotSignedIn

SCHEMA = """
CREATE TABLE IF NOT EXISTS worker_links (
    token_sha256 TEXT PRIMARY KEY, worker TEXT NOT NULL, created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL, revoked_ms INTEGER);
CREATE INDEX IF NOT EXISTS worker_links_worker ON worker_links (worker);
"""
TOKEN_BYTES = 24  # 192 bits
DEFAULT_TTL_MS = 7 * 86_400_000


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class LinkGrant:
    worker: str
    expires_ms: int


class SignInLinks:
    def __init__(self, db: sqlite3.Connection | Path, lock: threading.RLock | None = None
                 ) -> None:
        if isinstance(db, Path):
            db.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False,
                                 timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
        self.db = db
        self.lock = lock or threading.RLock()
        with self.lock:
            self.db.executescript(SCHEMA)

    def issue(self, worker: str, now_ms: int, ttl_ms: int = DEFAULT_TTL_MS) -> str:
        """A new token for `worker`, valid `ttl_ms` from `now_ms` (other links stay valid)."""
        if ttl_ms <= 0:
            raise ValueError(f"a link's lifetime must be positive, got {ttl_ms} ms")
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self.lock:
            self.db.execute("INSERT INTO worker_links VALUES (?,?,?,?,NULL)",
                            (digest(token), worker, now_ms, now_ms + ttl_ms))
        return token

    def check(self, token: str, now_ms: int) -> LinkGrant:
        """The worker a token signs in; NotSignedIn says why not (unknown/expired/revoked)."""
        if not token or len(token) > 200:
            raise NotSignedIn("unknown", "no sign-in token")
        with self.lock:
            row = self.db.execute("SELECT worker, expires_ms, revoked_ms FROM worker_links"
                                  " WHERE token_sha256 = ?", (digest(token),)).fetchone()
        if row is None:
            raise NotSignedIn("unknown", "this sign-in link is not known")
        worker, expires_ms, revoked_ms = row
        if revoked_ms is not None and revoked_ms <= now_ms:
            raise NotSignedIn("revoked", "this sign-in link was revoked")
        if now_ms >= expires_ms:
            raise NotSignedIn("expired", "this sign-in link has expired")
        return LinkGrant(str(worker), int(expires_ms))

    def revoke(self, worker: str, now_ms: int) -> int:
        """End every live link of `worker`; returns how many."""
        with self.lock:
            cur = self.db.execute("UPDATE worker_links SET revoked_ms = ? WHERE worker = ?"
                                  " AND revoked_ms IS NULL AND expires_ms > ?",
                                  (now_ms, worker, now_ms))
            return cur.rowcount

    def close(self) -> None:
        with self.lock:
            self.db.close()
