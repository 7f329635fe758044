"""The bot's state in SQLite: used confirmations, in-flight locks, and the append-only audit trail."""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS used_confirmations (
    nonce TEXT PRIMARY KEY, instance_id TEXT NOT NULL, user_id TEXT NOT NULL, decision TEXT NOT NULL,
    used_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS locks (
    instance_id TEXT PRIMARY KEY, owner TEXT NOT NULL, channel TEXT NOT NULL, thread_ts TEXT,
    correlation_id TEXT NOT NULL, acquired_at REAL NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, correlation_id TEXT, event TEXT NOT NULL,
    user_id TEXT, instance_id TEXT, channel TEXT, thread_ts TEXT, outcome TEXT, dbss_request_id TEXT, detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_instance ON audit (instance_id, id);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""

AUDIT_FIELDS = (
    "at",
    "correlation_id",
    "event",
    "user_id",
    "instance_id",
    "channel",
    "thread_ts",
    "outcome",
    "dbss_request_id",
    "detail",
)

INSERT_AUDIT = (
    "INSERT INTO audit (at, correlation_id, event, user_id, instance_id, channel, thread_ts, outcome, "
    "dbss_request_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SELECT_AUDIT = (
    "SELECT at, correlation_id, event, user_id, instance_id, channel, thread_ts, outcome, dbss_request_id, detail "
    "FROM audit"
)


@dataclass(frozen=True, slots=True)
class Lock:
    """An instance claimed by one reboot until `expires_at` (so a crash cannot lock it forever)."""

    instance_id: str
    owner: str
    channel: str
    thread_ts: str | None
    correlation_id: str
    acquired_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: float
    correlation_id: str | None
    event: str
    user_id: str | None
    instance_id: str | None
    channel: str | None
    thread_ts: str | None
    outcome: str | None
    dbss_request_id: str | None
    detail: str | None


class StateStore:
    """One SQLite file, safe for the listener threads of one process and for several processes (WAL, locks)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._mutex = threading.Lock()
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._mutex:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def confirmation_key(self) -> bytes:
        """The key that signs confirmation tokens: made once, kept across restarts."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('confirm_key', ?)", (secrets.token_bytes(32),))
            row = db.execute("SELECT value FROM meta WHERE key = 'confirm_key'").fetchone()
        return bytes(row[0])

    def claim_confirmation(self, nonce: str, *, instance_id: str, user_id: str, decision: str) -> bool:
        """Mark a confirmation used. False if it was used before: each one counts once, ever."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO used_confirmations (nonce, instance_id, user_id, decision, used_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (nonce, instance_id, user_id, decision, self._clock()),
            )
            return cursor.rowcount == 1

    def acquire_lock(
        self,
        instance_id: str,
        *,
        owner: str,
        channel: str,
        thread_ts: str | None,
        correlation_id: str,
        ttl_seconds: float,
    ) -> tuple[bool, Lock]:
        """(True, our lock), or (False, the live lock someone else holds). Expired locks are taken over."""
        now = self._clock()
        with self._transaction() as db:
            db.execute("DELETE FROM locks WHERE instance_id = ? AND expires_at <= ?", (instance_id, now))
            row = db.execute("SELECT * FROM locks WHERE instance_id = ?", (instance_id,)).fetchone()
            if row is not None:
                return False, Lock(*row)
            lock = Lock(instance_id, owner, channel, thread_ts, correlation_id, now, now + ttl_seconds)
            db.execute("INSERT INTO locks VALUES (?, ?, ?, ?, ?, ?, ?)", _lock_row(lock))
            return True, lock

    def current_lock(self, instance_id: str) -> Lock | None:
        with self._mutex:
            row = self._db.execute(
                "SELECT * FROM locks WHERE instance_id = ? AND expires_at > ?", (instance_id, self._clock())
            ).fetchone()
        return Lock(*row) if row else None

    def release_lock(self, instance_id: str, correlation_id: str) -> None:
        """Release our lock; someone else's (taken over after ours expired) is left alone."""
        with self._transaction() as db:
            db.execute("DELETE FROM locks WHERE instance_id = ? AND correlation_id = ?", (instance_id, correlation_id))

    def record(self, event: str, **fields: Any) -> None:
        """Append one entry to the audit trail."""
        unknown = set(fields) - set(AUDIT_FIELDS)
        if unknown:
            raise ValueError(f"unknown audit fields: {sorted(unknown)}")
        values = {name: fields.get(name) for name in AUDIT_FIELDS}
        values["at"] = self._clock()
        values["event"] = event
        with self._transaction() as db:
            db.execute(INSERT_AUDIT, tuple(values[name] for name in AUDIT_FIELDS))

    def audit(self, *, instance_id: str | None = None, limit: int = 1000) -> list[AuditEntry]:
        """Audit entries, oldest first (optionally for one instance)."""
        query = SELECT_AUDIT
        args: tuple[Any, ...] = ()
        if instance_id is not None:
            query += " WHERE instance_id = ?"
            args = (instance_id,)
        query += " ORDER BY id DESC LIMIT ?"
        with self._mutex:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [AuditEntry(*row) for row in reversed(rows)]


def _lock_row(lock: Lock) -> tuple[Any, ...]:
    return (
        lock.instance_id,
        lock.owner,
        lock.channel,
        lock.thread_ts,
        lock.correlation_id,
        lock.acquired_at,
        lock.expires_at,
    )
