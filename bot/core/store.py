"""The bot's state in SQLite: used confirmations, in-flight locks, and the append-only audit trail."""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.core.outbox import OutboxMessage, State

log = logging.getLogger(__name__)

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
    user_id TEXT, instance_id TEXT, channel TEXT, thread_ts TEXT, outcome TEXT, dbss_request_id TEXT, detail TEXT,
    region TEXT
);
CREATE INDEX IF NOT EXISTS audit_instance ON audit (instance_id, id);
CREATE TABLE IF NOT EXISTS followups (
    correlation_id TEXT PRIMARY KEY, instance_id TEXT NOT NULL, requester TEXT NOT NULL, approver TEXT NOT NULL,
    channel TEXT NOT NULL, thread_ts TEXT NOT NULL, started_at REAL NOT NULL, deadline REAL NOT NULL,
    progress_ts TEXT, seen_busy INTEGER NOT NULL DEFAULT 0, polls INTEGER NOT NULL DEFAULT 0,
    last_status TEXT, last_task TEXT, last_update_at REAL, done_at REAL, outcome TEXT
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
    "region",
)
# The fields of a cooldown record in Redis: those AuditEntry had before `region`, which replicas of earlier versions
# read as keyword arguments during a rolling upgrade.
COOLDOWN_FIELDS = AUDIT_FIELDS[:-1]

INSERT_AUDIT = f"INSERT INTO audit ({', '.join(AUDIT_FIELDS)}) VALUES ({', '.join('?' * len(AUDIT_FIELDS))})"  # noqa: S608
SELECT_AUDIT = f"SELECT {', '.join(AUDIT_FIELDS)} FROM audit"  # noqa: S608 - fixed column names


class StateUnavailable(Exception):
    """The state store cannot be read or written (locked, read-only, disk full, Redis down).

    The single-use guarantee lives there, so the bot refuses to reboot rather than go on without it.
    """


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
class FollowUp:
    """A reboot DBSS accepted, followed until the instance is idle again (kept across restarts)."""

    correlation_id: str
    instance_id: str
    requester: str
    approver: str
    channel: str
    thread_ts: str
    started_at: float
    deadline: float
    progress_ts: str | None = None
    seen_busy: bool = False
    polls: int = 0
    last_status: str | None = None
    last_task: str | None = None
    last_update_at: float | None = None
    target: str | None = None  # region:project_id (None: written before the bot served several targets)


FOLLOWUP_FIELDS = (
    "correlation_id",
    "instance_id",
    "requester",
    "approver",
    "channel",
    "thread_ts",
    "started_at",
    "deadline",
    "progress_ts",
    "seen_busy",
    "polls",
    "last_status",
    "last_task",
    "last_update_at",
    "target",
)
FOLLOWUP_COLUMNS = ", ".join(FOLLOWUP_FIELDS)
# Built from the constant field names above, never from input.
FOLLOWUP_INSERT = (
    f"INSERT OR IGNORE INTO followups ({FOLLOWUP_COLUMNS}) VALUES ({', '.join('?' * len(FOLLOWUP_FIELDS))})"  # noqa: S608
)
FOLLOWUP_SELECT = f"SELECT {FOLLOWUP_COLUMNS} FROM followups WHERE done_at IS NULL ORDER BY started_at"  # noqa: S608
FOLLOWUP_UPDATABLE = frozenset({"progress_ts", "seen_busy", "polls", "last_status", "last_task", "last_update_at"})


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the audit trail. `replica`: the replica that wrote it, when the trail is shared (Redis)."""

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
    region: str | None = None  # the region (label of the target) of the instance, with several targets
    replica: str | None = None


class StateStore:
    """One SQLite file, safe for the listener threads of one process and for several processes (WAL, locks)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._mutex = threading.Lock()
        self.failed_at: float | None = None
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        # Audit entries survive a crash of the process with NORMAL; only a power cut could lose the last few.
        # The writes the single-use guarantee rests on (claims and locks) are fsynced: see _transaction(durable=True).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._migrate()
        self._stop_checkpoints = threading.Event()
        if str(path) != ":memory:":
            # SQLite would checkpoint the WAL inside whichever commit crosses 1,000 pages, fsyncing while the
            # store's mutex is held and stalling every listener behind it. A connection of its own does it instead,
            # PASSIVE (it never blocks readers or the writer), every few seconds.
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            threading.Thread(target=self._checkpoints, args=(str(path),), name="sqlite-checkpoint", daemon=True).start()

    def _migrate(self) -> None:
        """Columns added since a state file was first made (CREATE TABLE IF NOT EXISTS keeps an old table)."""
        for table, column in (("followups", "target"), ("audit", "region")):
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")

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
    def _transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        try:
            with self._raw_transaction(durable=durable) as db:
                yield db
        except sqlite3.Error as err:
            self.failed_at = time.monotonic()
            raise StateUnavailable(f"state store: {err}") from err
        self.failed_at = None

    def failed_recently(self, seconds: float = 2.0) -> bool:
        """A write failed within `seconds` (and none succeeded since): callers that can wait elsewhere should."""
        failed_at = self.failed_at
        return failed_at is not None and time.monotonic() - failed_at < seconds

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
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

    def confirmation_key(self) -> bytes:
        """The key that signs confirmation tokens: made once, kept across restarts."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('confirm_key', ?)", (secrets.token_bytes(32),))
            row = db.execute("SELECT value FROM meta WHERE key = 'confirm_key'").fetchone()
        return bytes(row[0])

    def heartbeat(self) -> None:
        """A small real write (one row of `meta`) for the readiness check: it fails when other writes would."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('heartbeat', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (repr(self._clock()).encode(),),
            )

    def claim_confirmation(self, nonce: str, *, instance_id: str, user_id: str, decision: str) -> bool:
        """Mark a confirmation used. False if it was used before: each one counts once, ever."""
        with self._transaction(durable=True) as db:
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
        with self._transaction(durable=True) as db:
            db.execute("DELETE FROM locks WHERE instance_id = ? AND expires_at <= ?", (instance_id, now))
            row = db.execute("SELECT * FROM locks WHERE instance_id = ?", (instance_id,)).fetchone()
            if row is not None:
                return False, Lock(*row)
            lock = Lock(instance_id, owner, channel, thread_ts, correlation_id, now, now + ttl_seconds)
            db.execute("INSERT INTO locks VALUES (?, ?, ?, ?, ?, ?, ?)", _lock_row(lock))
            return True, lock

    def current_lock(self, instance_id: str) -> Lock | None:
        with self._reading() as db:
            row = db.execute(
                "SELECT * FROM locks WHERE instance_id = ? AND expires_at > ?", (instance_id, self._clock())
            ).fetchone()
        return Lock(*row) if row else None

    def release_lock(self, instance_id: str, correlation_id: str) -> None:
        """Release our lock; someone else's (taken over after ours expired) is left alone."""
        with self._transaction() as db:
            db.execute("DELETE FROM locks WHERE instance_id = ? AND correlation_id = ?", (instance_id, correlation_id))

    def record(self, event: str, *, announce: Sequence[OutboxMessage] = (), **fields: Any) -> None:
        """Append one entry to the audit trail, and write the messages that announce it in the same step."""
        entry = self._new_entry(event, fields)
        with self._transaction() as db:
            db.execute(INSERT_AUDIT, _audit_row(entry))
            self._enqueue(db, announce)

    def _new_entry(self, event: str, fields: dict[str, Any], *, replica: str | None = None) -> AuditEntry:
        unknown = set(fields) - set(AUDIT_FIELDS)
        if unknown:
            raise ValueError(f"unknown audit fields: {sorted(unknown)}")
        values: dict[str, Any] = {name: fields.get(name) for name in AUDIT_FIELDS}
        values["at"] = self._clock()
        values["event"] = event
        return AuditEntry(**values, replica=replica)

    def _append_local(self, entry: AuditEntry) -> None:
        """This file's copy of an entry written first to a shared trail (see RedisBackedStore.record)."""
        with self._transaction() as db:
            db.execute(INSERT_AUDIT, _audit_row(entry))

    # --- the outbox -------------------------------------------------------------------------------------

    def enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        """Write messages to deliver. A key written before is kept as it was; an update of a message whose
        earlier update is still waiting replaces that update's content (the newest state is what counts)."""
        if messages:
            with self._transaction() as db:
                self._enqueue(db, messages)

    def _enqueue(self, db: sqlite3.Connection, messages: Sequence[OutboxMessage]) -> None:
        now = self._clock()
        for m in messages:
            blocks = json.dumps(m.blocks) if m.blocks is not None else None
            if m.kind == "update" and m.target and m.state == "pending":
                cursor = db.execute(
                    "UPDATE outbox SET text = ?, blocks = ?, version = version + 1 WHERE id = (SELECT MAX(id) FROM "
                    "outbox WHERE kind = 'update' AND target = ? AND state = 'pending')",
                    (m.text, blocks, m.target),
                )
                if cursor.rowcount:
                    continue
            cursor = db.execute(
                "INSERT OR IGNORE INTO outbox (key, grp, kind, channel, correlation_id, thread_ts, text, blocks, "
                "target, ts, broadcast, must_see, recipient, version, state, attempts, not_before, uncertain, detail, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
                (
                    m.key,
                    m.group,
                    m.kind,
                    m.channel,
                    m.correlation_id,
                    m.thread_ts,
                    m.text,
                    blocks,
                    m.target,
                    m.ts,
                    int(m.broadcast),
                    int(m.must_see),
                    m.recipient,
                    m.state,
                    m.attempts,
                    m.not_before,
                    int(m.uncertain),
                    m.detail,
                    m.created_at or now,
                ),
            )
            if not cursor.rowcount and m.state == "sent":  # sent from memory while the store failed: mark it so
                db.execute(
                    "UPDATE outbox SET state = 'sent', ts = COALESCE(?, ts) WHERE key = ? AND state = 'pending'",
                    (m.ts, m.key),
                )

    def outbox_due(self, now: float, limit: int) -> list[OutboxMessage]:
        """The oldest waiting message of each group, if it may be sent now (later ones wait behind it)."""
        with self._reading() as db:
            rows = db.execute(
                SELECT_OUTBOX  # noqa: S608 - fixed column names, values bound
                + " AS o WHERE state = 'pending' AND id = (SELECT MIN(id) FROM outbox AS p WHERE "
                "p.state = 'pending' AND p.grp = o.grp) AND not_before <= ? ORDER BY id LIMIT ?",
                (now, limit),
            ).fetchall()
        return [_outbox_message(row) for row in rows]

    def outbox_release(self, message: OutboxMessage) -> None:
        """One process delivers from a SQLite file: there is no lease to give back."""

    def outbox_get(self, key: str) -> OutboxMessage | None:
        with self._reading() as db:
            row = db.execute(SELECT_OUTBOX + " WHERE key = ?", (key,)).fetchone()
        return _outbox_message(row) if row else None

    def outbox_done(self, message: OutboxMessage, *, state: State, ts: str | None, detail: str | None) -> bool:
        """Mark a message sent or failed; False if its content changed meanwhile (it is sent again, newer)."""
        with self._transaction() as db:
            cursor = db.execute(
                # A response_url is a bearer URL: it is not kept once its answer is settled.
                "UPDATE outbox SET state = ?, ts = COALESCE(?, ts), detail = ?, attempts = attempts + 1, "
                "target = CASE WHEN kind = 'respond' THEN NULL ELSE target END "
                "WHERE id = ? AND version = ? AND state = 'pending'",
                (state, ts, detail, message.id, message.version),
            )
            return cursor.rowcount == 1

    def outbox_retry(self, message: OutboxMessage, *, not_before: float, uncertain: bool, detail: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, not_before = ?, uncertain = ?, detail = ? WHERE id = ?",
                (not_before, int(uncertain), detail, message.id),
            )

    def outbox_backlog(self, now: float) -> tuple[int, float]:
        """(messages waiting, seconds the oldest has waited)."""
        with self._reading() as db:
            count, oldest = db.execute(
                "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE state = 'pending' AND kind != 'anchor'"
            ).fetchone()
        return int(count), (now - float(oldest)) if oldest is not None else 0.0

    def extend_lock(self, instance_id: str, correlation_id: str, *, until: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE locks SET expires_at = ? WHERE instance_id = ? AND correlation_id = ?",
                (until, instance_id, correlation_id),
            )

    # --- follow-ups -----------------------------------------------------------------------------------

    def add_followup(self, followup: FollowUp) -> None:
        with self._transaction() as db:
            db.execute(
                FOLLOWUP_INSERT,
                tuple(getattr(followup, name) for name in FOLLOWUP_FIELDS),
            )

    def active_followups(self) -> list[FollowUp]:
        with self._reading() as db:
            rows = db.execute(FOLLOWUP_SELECT).fetchall()
        return [_followup(row) for row in rows]

    def update_followup(self, correlation_id: str, **fields: Any) -> None:
        self.update_followups([(correlation_id, fields)])

    def update_followups(self, updates: list[tuple[str, dict[str, Any]]]) -> None:
        """Several follow-ups' progress in one transaction (the follower writes them all once per tick)."""
        check_followup_updates(updates)
        if not updates:
            return
        with self._transaction() as db:
            for correlation_id, fields in updates:
                assignments = ", ".join(f"{name} = ?" for name in sorted(fields))
                db.execute(
                    "UPDATE followups SET " + assignments + " WHERE correlation_id = ?",  # noqa: S608 - names checked above
                    (*(fields[name] for name in sorted(fields)), correlation_id),
                )

    def finish_followup(self, correlation_id: str, outcome: str) -> bool:
        """Mark a follow-up done; False if it already was (so only one thread reports its end)."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE followups SET done_at = ?, outcome = ? WHERE correlation_id = ? AND done_at IS NULL",
                (self._clock(), outcome, correlation_id),
            )
            return cursor.rowcount == 1

    # --- reading the audit trail ----------------------------------------------------------------------

    def interrupted(self) -> list[AuditEntry]:
        """Reboot intents with no recorded result (the bot died during the DBSS call), and results that were
        recorded but never reported: what a restart must tell the threads about."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT at, correlation_id, event, user_id, instance_id, channel, thread_ts, outcome, "
                "dbss_request_id, detail FROM audit AS a WHERE event IN ('reboot_intent', 'reboot_result') "
                "AND NOT EXISTS (SELECT 1 FROM audit b WHERE b.correlation_id = a.correlation_id AND ("
                "(a.event = 'reboot_intent' AND b.event = 'reboot_result') OR b.event = 'outcome_reported')) "
                "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.key = a.correlation_id || ':outcome') "
                "ORDER BY id"
            ).fetchall()
        return [AuditEntry(*row) for row in rows]

    def reboots(self, *, instance_id: str | None = None, limit: int = 10) -> list[AuditEntry]:
        """The latest reboot results (accepted, refused, unknown...), newest first."""
        query = SELECT_AUDIT + " WHERE event = 'reboot_result'"
        args: tuple[Any, ...] = ()
        if instance_id is not None:
            query += " AND instance_id = ?"
            args = (instance_id,)
        with self._reading() as db:
            rows = db.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [AuditEntry(*row) for row in rows]

    def last_reboot(self, instance_id: str) -> AuditEntry | None:
        """The latest reboot of this instance that DBSS accepted, or may have (outcome unknown)."""
        with self._reading() as db:
            row = db.execute(
                SELECT_AUDIT + " WHERE event = 'reboot_result' AND instance_id = ? AND outcome IN ('accepted', "
                "'unknown') ORDER BY id DESC LIMIT 1",
                (instance_id,),
            ).fetchone()
        return AuditEntry(*row) if row else None

    def followup_outcome(self, correlation_id: str) -> str | None:
        with self._reading() as db:
            row = db.execute("SELECT outcome FROM followups WHERE correlation_id = ?", (correlation_id,)).fetchone()
        return str(row[0]) if row and row[0] else None

    def audit(self, *, instance_id: str | None = None, limit: int = 1000) -> list[AuditEntry]:
        """Audit entries, oldest first (optionally for one instance)."""
        query = SELECT_AUDIT
        args: tuple[Any, ...] = ()
        if instance_id is not None:
            query += " WHERE instance_id = ?"
            args = (instance_id,)
        query += " ORDER BY id DESC LIMIT ?"
        with self._reading() as db:
            rows = db.execute(query, (*args, limit)).fetchall()
        return [AuditEntry(*row) for row in reversed(rows)]

    def entries(self, *, since: float | None = None, instance_id: str | None = None) -> Iterator[AuditEntry]:
        """The whole trail, oldest first, read a page at a time (for exports): entries at or after `since`."""
        last_id = 0
        while True:
            query = SELECT_AUDIT.replace("SELECT ", "SELECT id, ", 1) + " WHERE id > ? AND at >= ?"
            args: tuple[Any, ...] = (last_id, since if since is not None else float("-inf"))
            if instance_id is not None:
                query += " AND instance_id = ?"
                args = (*args, instance_id)
            with self._reading() as db:
                rows = db.execute(query + " ORDER BY id LIMIT ?", (*args, PAGE)).fetchall()
            for row in rows:
                yield AuditEntry(*row[1:])
            if len(rows) < PAGE:
                return
            last_id = rows[-1][0]


PAGE = 1000


def _audit_row(entry: AuditEntry) -> tuple[Any, ...]:
    return tuple(getattr(entry, name) for name in AUDIT_FIELDS)


def check_followup_updates(updates: list[tuple[str, dict[str, Any]]]) -> None:
    """Only a follow-up's progress fields may change (every store checks the same way)."""
    for _, fields in updates:
        if not fields or set(fields) - FOLLOWUP_UPDATABLE:
            raise ValueError(f"cannot update follow-up fields {sorted(set(fields) - FOLLOWUP_UPDATABLE)}")


OUTBOX_FIELDS = (
    "key",
    "kind",
    "channel",
    "correlation_id",
    "thread_ts",
    "text",
    "blocks",
    "target",
    "ts",
    "broadcast",
    "must_see",
    "recipient",
    "id",
    "version",
    "state",
    "attempts",
    "not_before",
    "uncertain",
    "detail",
    "created_at",
)
SELECT_OUTBOX = "SELECT " + ", ".join(OUTBOX_FIELDS) + " FROM outbox"  # noqa: S608 - fixed column names


def _outbox_message(row: tuple[Any, ...]) -> OutboxMessage:
    values = dict(zip(OUTBOX_FIELDS, row, strict=True))
    values["blocks"] = json.loads(values["blocks"]) if values["blocks"] else None
    for flag in ("broadcast", "must_see", "uncertain"):
        values[flag] = bool(values[flag])
    return OutboxMessage(**values)


def _followup(row: tuple[Any, ...]) -> FollowUp:
    values = dict(zip(FOLLOWUP_FIELDS, row, strict=True))
    values["seen_busy"] = bool(values["seen_busy"])
    return FollowUp(**values)


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
