"""The bot's state in SQLite (one replica): the store contract of bot/core/contract.py in one file.

The queries are bot/core/sql.py's, shared with PostgreSQL; this module opens the file, runs its migrations and
keeps the WAL checkpointed. The schema carries its version in `PRAGMA user_version`, and a file written by any
released version is migrated in place at start-up (MIGRATIONS; a step never changes once it has shipped).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bot.core.contract import (
    AUDIT_FIELDS,
    FOLLOWUP_FIELDS,
    AuditEntry,
    FollowUp,
    Lock,
    StateUnavailable,
    check_followup_updates,
)
from bot.core.sql import ENTRY_COLUMNS, PAGE, Db, SqlStore

log = logging.getLogger(__name__)

# What other modules import from here since before the contract had a module of its own.
__all__ = [
    "AUDIT_FIELDS",
    "FOLLOWUP_FIELDS",
    "PAGE",
    "SCHEMA_0",
    "SCHEMA_VERSION",
    "AuditEntry",
    "FollowUp",
    "Lock",
    "StateStore",
    "StateUnavailable",
    "check_followup_updates",
]

# The schema of every version up to main ff24a36 (user_version 0); later versions are MIGRATIONS' steps.
SCHEMA_0 = """
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
    user_id TEXT, instance_id TEXT, channel TEXT, thread_ts TEXT, outcome TEXT, dbss_request_id TEXT, detail TEXT,
    region TEXT
);
CREATE INDEX IF NOT EXISTS audit_instance ON audit (instance_id, id);
CREATE TABLE IF NOT EXISTS followups (
    correlation_id TEXT PRIMARY KEY, instance_id TEXT NOT NULL, requester TEXT NOT NULL, approver TEXT NOT NULL,
    channel TEXT NOT NULL, thread_ts TEXT NOT NULL, started_at REAL NOT NULL, deadline REAL NOT NULL,
    progress_ts TEXT, seen_busy INTEGER NOT NULL DEFAULT 0, polls INTEGER NOT NULL DEFAULT 0,
    last_status TEXT, last_task TEXT, last_update_at REAL, done_at REAL, outcome TEXT, target TEXT
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, grp TEXT NOT NULL, kind TEXT NOT NULL,
    channel TEXT NOT NULL, correlation_id TEXT, thread_ts TEXT, text TEXT NOT NULL, blocks TEXT, target TEXT,
    ts TEXT, broadcast INTEGER NOT NULL, must_see INTEGER NOT NULL, recipient TEXT, version INTEGER NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL, not_before REAL NOT NULL, uncertain INTEGER NOT NULL,
    detail TEXT, created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, grp, id);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""

ENTRY_DDL = ", ".join(f"{c} {'REAL NOT NULL' if c == 'at' else 'TEXT'}" for c in ENTRY_COLUMNS)
_ENTRY = ", ".join(ENTRY_COLUMNS)

# Version 1: the records that keep every request and start-up O(1) in the history (the last reboot of each
# instance, the unsettled reboots), the indexes the remaining reads use, and retention (finished follow-ups go,
# the audit trail may be trimmed past BOT_AUDIT_RETENTION_DAYS, never within it).
MIGRATION_1 = [
    "ALTER TABLE audit ADD COLUMN replica TEXT",
    f"CREATE TABLE last_reboots ({ENTRY_DDL.replace('instance_id TEXT', 'instance_id TEXT PRIMARY KEY')})",
    f"CREATE TABLE unsettled ({ENTRY_DDL.replace('correlation_id TEXT', 'correlation_id TEXT PRIMARY KEY')}, "
    "claimed_until REAL NOT NULL DEFAULT 0)",
    "CREATE INDEX audit_correlation ON audit (correlation_id, event)",
    "CREATE INDEX audit_results ON audit (event, instance_id, id)",
    "CREATE INDEX audit_events ON audit (event, id)",
    "CREATE INDEX audit_at ON audit (at)",
    "CREATE INDEX outbox_done ON outbox (state, created_at)",
    "CREATE INDEX used_confirmations_at ON used_confirmations (used_at)",
    # The latest accepted (or unknown) result of each instance.
    f"INSERT INTO last_reboots ({_ENTRY}) SELECT {_ENTRY} FROM audit WHERE id IN (SELECT MAX(id) FROM audit "  # noqa: S608
    "WHERE event = 'reboot_result' AND outcome IN ('accepted', 'unknown') AND instance_id IS NOT NULL "
    "GROUP BY instance_id)",
    # Intents without a result, and results never reported: what version 0 found at every start by a scan.
    f"INSERT OR REPLACE INTO unsettled ({_ENTRY}) SELECT {_ENTRY} FROM audit AS a "  # noqa: S608
    "WHERE event IN ('reboot_intent', 'reboot_result') AND correlation_id IS NOT NULL "
    "AND NOT EXISTS (SELECT 1 FROM audit b WHERE b.correlation_id = a.correlation_id AND ("
    "(a.event = 'reboot_intent' AND b.event = 'reboot_result') OR b.event = 'outcome_reported')) ORDER BY id",
    "DELETE FROM followups WHERE done_at IS NOT NULL",
    "DROP TRIGGER audit_no_delete",
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit WHEN OLD.at >= COALESCE((SELECT CAST(CAST(value AS TEXT) "
    "AS REAL) FROM meta WHERE key = 'audit_trim_before'), 0) "
    "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
]
MIGRATIONS: list[list[str]] = [MIGRATION_1]
SCHEMA_VERSION = len(MIGRATIONS)


class StateStore(SqlStore):
    """One SQLite file, safe for the listener threads of one process and for several processes (WAL, locks)."""

    backend = "sqlite"

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self._mutex = threading.Lock()
        self.path = str(path)
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        # Audit entries survive a crash of the process with NORMAL; only a power cut could lose the last few.
        # The writes the single-use guarantee rests on (claims and locks) are fsynced: see _transaction(durable=True).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self.schema_version = self._migrate()
        self._stop_checkpoints = threading.Event()
        if str(path) != ":memory:":
            # SQLite would checkpoint the WAL inside whichever commit crosses 1,000 pages, fsyncing while the
            # store's mutex is held and stalling every listener behind it. A connection of its own does it instead,
            # PASSIVE (it never blocks readers or the writer), every few seconds.
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            threading.Thread(target=self._checkpoints, args=(str(path),), name="sqlite-checkpoint", daemon=True).start()

    def _migrate(self) -> int:
        """Bring the file to SCHEMA_VERSION, in one IMMEDIATE transaction (two processes starting together
        migrate once; a step that fails leaves the file as it was)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StateUnavailable(
                    f"state store: {self.path} has schema version {version}, newer than this bot's "
                    f"{SCHEMA_VERSION}: run the newer version, or restore a backup"
                )
            if version == 0:
                for statement in SCHEMA_0.split(";\n"):
                    if statement.strip():
                        db.execute(statement)
                # Columns added to version 0 over its life (CREATE TABLE IF NOT EXISTS keeps an old table).
                for table, column in (("followups", "target"), ("audit", "region")):
                    columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                    if column not in columns:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
            for number, steps in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in steps:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if version < SCHEMA_VERSION:
            log.info("state store migrated", extra={"from_version": version, "to_version": SCHEMA_VERSION})
        return SCHEMA_VERSION

    def _checkpoints(self, path: str, every: float = 2.0) -> None:
        db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop_checkpoints.wait(every):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    log.warning("WAL checkpoint failed; will try again", exc_info=True)
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    def close(self) -> None:
        self._stop_checkpoints.set()
        with self._mutex:
            self._db.close()

    @contextmanager
    def _transaction(self, *, durable: bool = False) -> Iterator[Db]:
        try:
            with self._raw_transaction(durable=durable) as db:
                yield db
        except sqlite3.Error as err:
            self.failed_at = time.monotonic()
            raise StateUnavailable(f"state store: {err}") from err
        self.failed_at = None

    @contextmanager
    def _reading(self) -> Iterator[Db]:
        try:
            with self._mutex:
                yield self._db
        except sqlite3.Error as err:
            raise StateUnavailable(f"state store: {err}") from err

    @contextmanager
    def _raw_transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            if durable:
                self._db.execute("PRAGMA synchronous=FULL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if durable:
                    self._db.execute("PRAGMA synchronous=NORMAL")

    def _append_local(self, entry: AuditEntry) -> None:
        """This file's copy of an entry written first to a shared trail (see RedisBackedStore.record)."""
        with self._transaction() as db:
            self._append(db, entry)

    def _disk_size(self, db: Db) -> str:
        pages = db.execute("PRAGMA page_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0]
        return f"file {pages / 1e6:.1f} MB"
