"""The bot's state in PostgreSQL (DATABASE_URL), for several replicas that must keep their audit trail and their
single-use claims through failovers: the store contract of bot/core/contract.py on the database a team already runs.

The queries are bot/core/sql.py's, shared with SQLite; what PostgreSQL does differently lives here. Claims and locks
are constraints inside short transactions (a unique claim row, a lock row taken with ON CONFLICT); the outbox is
leased a thread head at a time with `SELECT ... FOR UPDATE SKIP LOCKED`, so several replicas deliver without
sending a message twice; follow-ups are leased the same way; a reboot found at start-up is claimed before it is
reported. The schema carries its version in `schema_version`, migrated under a transaction-level advisory lock.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from bot.core.contract import FOLLOWUP_FIELDS, FollowUp, StateUnavailable
from bot.core.outbox import OutboxMessage
from bot.core.sql import ENTRY_COLUMNS, OUTBOX_FIELDS, Cursor, SqlStore, _followup, _outbox_message

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x5EED0021  # any constant bigint, the same in every replica
_ENTRY_DDL = ", ".join(f"{c} {'double precision NOT NULL' if c == 'at' else 'text'}" for c in ENTRY_COLUMNS)
MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE meta (key text PRIMARY KEY, value bytea NOT NULL)",
        "CREATE TABLE used_confirmations (nonce text PRIMARY KEY, instance_id text NOT NULL, user_id text NOT NULL, "
        "decision text NOT NULL, used_at double precision NOT NULL)",
        "CREATE INDEX used_confirmations_at ON used_confirmations (used_at)",
        "CREATE TABLE locks (instance_id text PRIMARY KEY, owner text NOT NULL, channel text NOT NULL, "
        "thread_ts text, correlation_id text NOT NULL, acquired_at double precision NOT NULL, "
        "expires_at double precision NOT NULL)",
        f"CREATE TABLE audit (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {_ENTRY_DDL})",
        "CREATE INDEX audit_instance ON audit (instance_id, id)",
        "CREATE INDEX audit_correlation ON audit (correlation_id, event)",
        "CREATE INDEX audit_results ON audit (event, instance_id, id)",
        "CREATE INDEX audit_events ON audit (event, id)",
        "CREATE INDEX audit_at ON audit (at)",
        f"CREATE TABLE last_reboots ({_ENTRY_DDL.replace('instance_id text', 'instance_id text PRIMARY KEY')})",
        f"CREATE TABLE unsettled ({_ENTRY_DDL.replace('correlation_id text', 'correlation_id text PRIMARY KEY')}, "
        "claimed_until double precision NOT NULL DEFAULT 0)",
        "CREATE TABLE followups (correlation_id text PRIMARY KEY, instance_id text NOT NULL, requester text NOT NULL, "
        "approver text NOT NULL, channel text NOT NULL, thread_ts text NOT NULL, started_at double precision NOT NULL, "
        "deadline double precision NOT NULL, progress_ts text, seen_busy integer NOT NULL DEFAULT 0, "
        "polls integer NOT NULL DEFAULT 0, last_status text, last_task text, last_update_at double precision, "
        "done_at double precision, outcome text, target text, owner text, lease_until double precision)",
        "CREATE TABLE outbox (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, key text NOT NULL UNIQUE, "
        "grp text NOT NULL, kind text NOT NULL, channel text NOT NULL, correlation_id text, thread_ts text, "
        "text text NOT NULL, blocks text, target text, ts text, broadcast integer NOT NULL, must_see integer NOT NULL, "
        "recipient text, version integer NOT NULL, state text NOT NULL, attempts integer NOT NULL, "
        "not_before double precision NOT NULL, uncertain integer NOT NULL, detail text, "
        "created_at double precision NOT NULL, lease_owner text, lease_until double precision)",
        "CREATE INDEX outbox_pending ON outbox (grp, id) WHERE state = 'pending'",
        "CREATE INDEX outbox_update ON outbox (target, id) WHERE state = 'pending' AND kind = 'update'",
        "CREATE INDEX outbox_done ON outbox (created_at) WHERE state != 'pending'",
        # Append-only: an entry may be deleted only once it is older than the retention cutoff trim() wrote.
        "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF TG_OP = 'DELETE' AND OLD.at < COALESCE((SELECT convert_from(value, 'UTF8')::double precision "
        "FROM meta WHERE key = 'audit_trim_before'), 0) THEN RETURN OLD; END IF; "
        "RAISE EXCEPTION 'the audit trail is append-only'; END $$",
        "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit FOR EACH ROW "
        "EXECUTE FUNCTION audit_append_only()",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)
_OUTBOX_COLUMNS = ", ".join(f"o.{c}" for c in OUTBOX_FIELDS)
_FOLLOWUP_COLUMNS = ", ".join(FOLLOWUP_FIELDS)


class _Translated:
    """psycopg's connection behind the `?` placeholders bot/core/sql.py writes."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        return self._conn.execute(sql.replace("?", "%s"), parameters or None)


class PostgresStore(SqlStore):
    """One connection per process (psycopg's is thread-safe; the store's calls are short), reconnected when it
    breaks. `name`: this replica's name in the shared trail, stable across restarts (default: the host name)."""

    backend = "postgresql"
    shared = True

    def __init__(
        self,
        dsn: str,
        *,
        name: str | None = None,
        lease_seconds: float = 30.0,
        outbox_lease_seconds: float = 25.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock=clock)
        self._dsn = dsn
        self._mutex = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._lease = lease_seconds
        self._outbox_lease = outbox_lease_seconds
        # The name in the trail is stable across restarts (a restarted replica reports its own interrupted reboots at
        # once); the name that holds leases is this process's own, so two processes never share a lease.
        self.audit_name = name or socket.gethostname()
        self.replica = f"{self.audit_name}:{os.getpid()}:{secrets.token_hex(3)}"
        self.schema_version = self._migrate()

    def _connection(self) -> psycopg.Connection[Any]:
        # The retry policy, stated here: psycopg never re-sends a statement, and neither does this store. A statement
        # whose connection broke or timed out may have committed: the caller gets StateUnavailable and says what is
        # true; only the next call opens a new connection. One connection, behind the store's mutex: no pool.
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=5,
                prepare_threshold=None,  # safe behind a transaction-mode pooler (PgBouncer)
                options="-c statement_timeout=5000 -c lock_timeout=5000 -c idle_in_transaction_session_timeout=60000",
            )
        return self._conn

    def _migrate(self) -> int:
        with self._transaction() as db:
            db.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            version = int(db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StateUnavailable(
                    f"state store (PostgreSQL): schema version {version} is newer than this bot's {SCHEMA_VERSION}"
                )
            for number, steps in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in steps:
                    db.execute(statement)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
        return SCHEMA_VERSION

    @contextmanager
    def _transaction(self, *, durable: bool = False) -> Iterator[_Translated]:
        with self._errors(), self._mutex:
            conn = self._connection()
            with conn.transaction():
                yield _Translated(conn)
        self.failed_at = None

    @contextmanager
    def _reading(self) -> Iterator[_Translated]:
        with self._errors(), self._mutex:
            yield _Translated(self._connection())

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as err:
            self.failed_at = time.monotonic()
            if self._conn is not None and self._conn.broken:
                self._conn = None  # the next call reconnects
            raise StateUnavailable(f"state store (PostgreSQL): {type(err).__name__}: {err}") from err

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _batch_delete(self, table: str, key: str, where: str) -> str:
        # `IN (SELECT ... LIMIT n)` was planned as a scan of the whole table; ANY(ARRAY(...)) uses the index.
        return f"DELETE FROM {table} WHERE {key} = ANY(ARRAY(SELECT {key} FROM {table} WHERE {where} LIMIT ?))"  # noqa: S608

    # --- several replicas: leases on follow-ups and outbox threads ------------------------------------

    def active_followups(self) -> list[FollowUp]:
        """The follow-ups this replica owns: its own, and any whose owner's lease has lapsed (taken over)."""
        now = self._clock()
        with self._transaction() as db:
            rows = db.execute(
                f"UPDATE followups SET owner = ?, lease_until = ? WHERE done_at IS NULL AND "  # noqa: S608
                f"(owner IS NULL OR owner = ? OR lease_until < ?) RETURNING {_FOLLOWUP_COLUMNS}",
                (self.replica, now + self._lease, self.replica, now),
            ).fetchall()
        return sorted((_followup(row) for row in rows), key=lambda f: f.started_at)

    def outbox_due(self, now: float, limit: int) -> list[OutboxMessage]:
        """The oldest pending message of each thread, leased to this replica; heads another replica holds (a live
        lease, or a row locked by its transaction) are skipped, not waited for."""
        with self._transaction() as db:
            rows = db.execute(
                f"UPDATE outbox AS o SET lease_owner = ?, lease_until = ? WHERE o.id = ANY(ARRAY("  # noqa: S608
                "SELECT m.id FROM outbox AS m WHERE m.state = 'pending' AND m.not_before <= ? "
                "AND (m.lease_until IS NULL OR m.lease_until < ? OR m.lease_owner = ?) "
                "AND m.id = (SELECT MIN(p.id) FROM outbox AS p WHERE p.state = 'pending' AND p.grp = m.grp) "
                f"ORDER BY m.id LIMIT ? FOR UPDATE SKIP LOCKED)) RETURNING {_OUTBOX_COLUMNS}",
                (self.replica, now + self._outbox_lease, now, now, self.replica, limit),
            ).fetchall()
        return sorted((_outbox_message(row) for row in rows), key=lambda m: m.id)

    def outbox_release(self, message: OutboxMessage) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?",
                (message.id, self.replica),
            )

    def _disk_size(self, db: Any) -> str:
        total = db.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        return f"database {int(total) / 1e6:.1f} MB"
