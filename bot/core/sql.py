"""The store contract in SQL, written once for SQLite and PostgreSQL (each backend says how to connect and migrate).

Queries are written with `?` placeholders; a backend whose driver wants another style translates them. Every query a
request or start-up makes is an indexed look-up or reads only in-flight work (unsettled reboots, pending messages,
active follow-ups): the audit trail is only appended to, trimmed, and read page by page by the export.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from bot.core.contract import (
    AUDIT_FIELDS,
    FOLLOWUP_FIELDS,
    OUTBOX_SECONDS,
    RECOVERY_CLAIM_SECONDS,
    RECOVERY_WINDOW_SECONDS,
    USED_CONFIRMATION_SECONDS,
    AuditEntry,
    FollowUp,
    Lock,
    StoreSize,
    check_audit_fields,
    check_followup_updates,
    opens_recovery,
    recoverable,
    settles_recovery,
    starts_cooldown,
)
from bot.core.outbox import OutboxMessage, State


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Db(Protocol):
    """A connection inside a transaction (sqlite3's, or psycopg's behind a placeholder translation)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...


ENTRY_COLUMNS = (*AUDIT_FIELDS, "replica")
AUDIT_COLUMNS = ", ".join(ENTRY_COLUMNS)
PLACES = ", ".join("?" * len(ENTRY_COLUMNS))
# Built from the constant field names above, never from input.
INSERT_AUDIT = f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ({PLACES})"  # noqa: S608
SELECT_AUDIT = f"SELECT {AUDIT_COLUMNS} FROM audit"  # noqa: S608
SELECT_UNSETTLED = f"SELECT {AUDIT_COLUMNS} FROM unsettled"  # noqa: S608
UPSERT_LAST_REBOOT = (
    f"INSERT INTO last_reboots ({AUDIT_COLUMNS}) VALUES ({PLACES}) ON CONFLICT (instance_id) DO UPDATE SET "  # noqa: S608
    + ", ".join(f"{c} = excluded.{c}" for c in ENTRY_COLUMNS if c != "instance_id")
)
SELECT_LAST_REBOOT = f"SELECT {AUDIT_COLUMNS} FROM last_reboots WHERE instance_id = ?"  # noqa: S608
OPEN_UNSETTLED = f"INSERT INTO unsettled ({AUDIT_COLUMNS}) VALUES ({PLACES}) ON CONFLICT (correlation_id) "  # noqa: S608
OPEN_CONFIRMED = OPEN_UNSETTLED + "DO NOTHING"
# An intent replaces its confirmation, never a result (a result recorded first stands).
OPEN_INTENT = (
    OPEN_UNSETTLED
    + "DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in ENTRY_COLUMNS if c != "correlation_id")
    + " WHERE unsettled.event = 'confirmed'"
)
OPEN_RESULT = (
    OPEN_UNSETTLED
    + "DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in ENTRY_COLUMNS if c != "correlation_id")
    + ", claimed_until = 0"
)

FOLLOWUP_COLUMNS = ", ".join(FOLLOWUP_FIELDS)
FOLLOWUP_INSERT = (
    f"INSERT INTO followups ({FOLLOWUP_COLUMNS}) VALUES ({', '.join('?' * len(FOLLOWUP_FIELDS))}) "  # noqa: S608
    "ON CONFLICT (correlation_id) DO NOTHING"
)
FOLLOWUP_SELECT = f"SELECT {FOLLOWUP_COLUMNS} FROM followups WHERE done_at IS NULL"  # noqa: S608

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
PAGE = 1000


class SqlStore:
    """The contract over one SQL connection; subclasses give `_transaction`, `_reading` and the schema."""

    backend = "sql"
    # Whether several processes share the store, so a reboot found at start-up is claimed before it is reported.
    shared = False
    schema_version = 0  # set by each backend once it has migrated

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.failed_at: float | None = None
        self.audit_name: str | None = None  # the name this process's audit entries carry, when the trail is shared

    # --- what a backend provides ----------------------------------------------------------------------

    def _transaction(self, *, durable: bool = False) -> AbstractContextManager[Db]:
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Db]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def size(self) -> StoreSize:
        """Audit entries from the two ends of the primary key (no count(*), which would scan the trail), the oldest
        entry, pending messages (in-flight work only), and the backend's size on disk."""
        with self._reading() as db:
            first = db.execute("SELECT id, at FROM audit ORDER BY id LIMIT 1").fetchone()
            last = db.execute("SELECT id FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            pending = db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
            disk = self._disk_size(db)
        entries = int(last[0]) - int(first[0]) + 1 if first and last else 0
        return StoreSize(
            self.backend,
            entries,
            float(first[1]) if first else None,
            int(pending),
            (disk, f"schema {self.schema_version}"),
        )

    def _disk_size(self, db: Db) -> str:
        """The store's size on disk, as `check` says it."""
        raise NotImplementedError

    # --- keys and liveness ----------------------------------------------------------------------------

    def failed_recently(self, seconds: float = 2.0) -> bool:
        """A write failed within `seconds` (and none succeeded since): callers that can wait elsewhere should."""
        failed_at = self.failed_at
        return failed_at is not None and time.monotonic() - failed_at < seconds

    def _meta(self, key: str, make: Callable[[], bytes]) -> bytes:
        """A value written once, when first asked for: read (a click reads the generation), written only then."""
        with self._reading() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return bytes(row[0])
        with self._transaction() as db:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, make()))
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return bytes(row[0])

    def confirmation_key(self) -> bytes:
        """The key that signs confirmation tokens: made once, kept across restarts."""
        return self._meta("confirm_key", lambda: secrets.token_bytes(32))

    def generation(self) -> str:
        return self._meta("generation", lambda: secrets.token_hex(16).encode()).decode()

    def heartbeat(self) -> None:
        """A small real write (one row of `meta`) for the readiness check: it fails when other writes would."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('heartbeat', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (repr(self._clock()).encode(),),
            )

    # --- claims and locks -----------------------------------------------------------------------------

    def claim_confirmation(self, nonce: str, *, instance_id: str, user_id: str, decision: str) -> bool:
        """Mark a confirmation used. False if it was used before: each one counts once, ever."""
        with self._transaction(durable=True) as db:
            cursor = db.execute(
                "INSERT INTO used_confirmations (nonce, instance_id, user_id, decision, used_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (nonce) DO NOTHING",
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
        lock = Lock(instance_id, owner, channel, thread_ts, correlation_id, now, now + ttl_seconds)
        with self._transaction(durable=True) as db:
            db.execute("DELETE FROM locks WHERE instance_id = ? AND expires_at <= ?", (instance_id, now))
            cursor = db.execute(
                "INSERT INTO locks (instance_id, owner, channel, thread_ts, correlation_id, acquired_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (instance_id) DO NOTHING",
                _lock_row(lock),
            )
            if cursor.rowcount == 1:
                return True, lock
            row = db.execute(LOCK_SELECT + " WHERE instance_id = ?", (instance_id,)).fetchone()
            return False, Lock(*row)

    def current_lock(self, instance_id: str) -> Lock | None:
        with self._reading() as db:
            row = db.execute(
                LOCK_SELECT + " WHERE instance_id = ? AND expires_at > ?", (instance_id, self._clock())
            ).fetchone()
        return Lock(*row) if row else None

    def release_lock(self, instance_id: str, correlation_id: str) -> None:
        """Release our lock; someone else's (taken over after ours expired) is left alone."""
        with self._transaction() as db:
            db.execute("DELETE FROM locks WHERE instance_id = ? AND correlation_id = ?", (instance_id, correlation_id))

    def extend_lock(self, instance_id: str, correlation_id: str, *, until: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE locks SET expires_at = ? WHERE instance_id = ? AND correlation_id = ?",
                (until, instance_id, correlation_id),
            )

    # --- the audit trail ------------------------------------------------------------------------------

    def record(self, event: str, *, announce: Sequence[OutboxMessage] = (), **fields: Any) -> None:
        """Append one entry to the audit trail, and write the messages that announce it in the same step."""
        entry = self._new_entry(event, fields, replica=self.audit_name)
        with self._transaction() as db:
            self._append(db, entry)
            self._enqueue(db, announce)

    def _new_entry(self, event: str, fields: dict[str, Any], *, replica: str | None = None) -> AuditEntry:
        check_audit_fields(fields)
        values: dict[str, Any] = {name: fields.get(name) for name in AUDIT_FIELDS}
        values["at"] = self._clock()
        values["event"] = event
        return AuditEntry(**values, replica=replica)

    def _append(self, db: Db, entry: AuditEntry) -> None:
        """The entry, and the records the decisions keep beside it: the last reboot, the unsettled reboots."""
        row = _entry_row(entry)
        db.execute(INSERT_AUDIT, row)
        if starts_cooldown(entry.event, entry.outcome) and entry.instance_id:
            db.execute(UPSERT_LAST_REBOOT, row)
        if entry.correlation_id:
            if opens_recovery(entry.event):
                opening = {"confirmed": OPEN_CONFIRMED, "reboot_intent": OPEN_INTENT}.get(entry.event, OPEN_RESULT)
                db.execute(opening, row)
            elif settles_recovery(entry.event):
                db.execute("DELETE FROM unsettled WHERE correlation_id = ?", (entry.correlation_id,))

    def last_reboot(self, instance_id: str) -> AuditEntry | None:
        """The latest reboot of this instance that DBSS accepted, or may have (outcome unknown)."""
        with self._reading() as db:
            row = db.execute(SELECT_LAST_REBOOT, (instance_id,)).fetchone()
        return AuditEntry(*row) if row else None

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

    def followup_outcome(self, correlation_id: str) -> str | None:
        """How the follow-up of a reboot ended, from its `followup_done` entry (finished follow-ups are deleted)."""
        with self._reading() as db:
            row = db.execute(
                "SELECT outcome FROM audit WHERE correlation_id = ? AND event = 'followup_done' ORDER BY id LIMIT 1",
                (correlation_id,),
            ).fetchone()
        return str(row[0]) if row and row[0] else None

    def interrupted(self) -> list[AuditEntry]:
        """Reboot intents with no recorded result (the bot died during the DBSS call), and results that were
        recorded but never reported: what a restart must tell the threads about. Only unsettled reboots are read."""
        now = self._clock()
        with self._reading() as db:
            rows = db.execute(
                SELECT_UNSETTLED  # noqa: S608 - fixed column names, values bound
                + " AS u WHERE claimed_until <= ? AND NOT EXISTS "
                "(SELECT 1 FROM outbox o WHERE o.key = u.correlation_id || ':outcome') ORDER BY at",
                (now,),
            ).fetchall()
        found = [e for e in (AuditEntry(*row) for row in rows) if recoverable(e, me=self.audit_name, now=now)]
        if not self.shared or not found:
            return found
        claimed: list[AuditEntry] = []
        with self._transaction() as db:
            for e in found:
                cursor = db.execute(
                    "UPDATE unsettled SET claimed_until = ? WHERE correlation_id = ? AND claimed_until <= ?",
                    (now + RECOVERY_CLAIM_SECONDS, e.correlation_id, now),
                )
                if cursor.rowcount == 1:
                    claimed.append(e)
        return claimed

    def audit(self, *, instance_id: str | None = None, limit: int = 1000) -> list[AuditEntry]:
        """Audit entries, oldest first (optionally for one instance): the newest `limit` of them."""
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
            query = f"SELECT id, {AUDIT_COLUMNS} FROM audit WHERE id > ? AND at >= ?"  # noqa: S608
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

    # --- follow-ups -----------------------------------------------------------------------------------

    def add_followup(self, followup: FollowUp) -> None:
        with self._transaction() as db:
            db.execute(FOLLOWUP_INSERT, tuple(_followup_value(getattr(followup, name)) for name in FOLLOWUP_FIELDS))

    def active_followups(self) -> list[FollowUp]:
        with self._reading() as db:
            rows = db.execute(FOLLOWUP_SELECT + " ORDER BY started_at").fetchall()
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
                    (*(_followup_value(fields[name]) for name in sorted(fields)), correlation_id),
                )

    def finish_followup(self, correlation_id: str, outcome: str) -> bool:
        """End a follow-up (deleted at once: its `followup_done` entry keeps the outcome); False if it already
        was ended (so only one thread reports its end)."""
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM followups WHERE correlation_id = ? AND done_at IS NULL", (correlation_id,))
            return cursor.rowcount == 1

    # --- the outbox -----------------------------------------------------------------------------------

    def enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        """Write messages to deliver. A key written before is kept as it was; an update of a message whose
        earlier update is still waiting replaces that update's content (the newest state is what counts)."""
        if messages:
            with self._transaction() as db:
                self._enqueue(db, messages)

    def _enqueue(self, db: Db, messages: Sequence[OutboxMessage]) -> None:
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
                "INSERT INTO outbox (key, grp, kind, channel, correlation_id, thread_ts, text, blocks, "
                "target, ts, broadcast, must_see, recipient, version, state, attempts, not_before, uncertain, detail, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO NOTHING",
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

    # --- retention ------------------------------------------------------------------------------------

    def trim(self, now: float, *, audit_retention_days: int, batch: int = 1000) -> int:
        """One batch of each kind of retention, each its own short transaction: expired claims, delivered messages
        past the duplicate window, unsettled reboots past the recovery window, audit entries past the retention
        (0 days keeps them all). Returns how many rows went; the caller loops until 0, pausing between batches."""
        deleted = 0
        steps = [
            ("used_confirmations", "nonce", "used_at < ?", now - USED_CONFIRMATION_SECONDS),
            ("outbox", "id", "state != 'pending' AND created_at < ?", now - OUTBOX_SECONDS),
            ("unsettled", "correlation_id", "at < ?", now - RECOVERY_WINDOW_SECONDS),
        ]
        for table, key, where, cutoff in steps:
            with self._transaction() as db:
                deleted += db.execute(self._batch_delete(table, key, where), (cutoff, batch)).rowcount
        if audit_retention_days > 0:
            deleted += self._trim_audit(now - audit_retention_days * 86400.0, batch)
        return deleted

    def _batch_delete(self, table: str, key: str, where: str) -> str:
        """At most a batch of rows (the last placeholder): SQLite's portable form, by primary key."""
        return f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {where} LIMIT ?)"  # noqa: S608

    def _trim_audit(self, cutoff: float, batch: int) -> int:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('audit_trim_before', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (repr(cutoff).encode(),),
            )
            return db.execute(self._batch_delete("audit", "id", "at < ? ORDER BY at"), (cutoff, batch)).rowcount


LOCK_SELECT = "SELECT instance_id, owner, channel, thread_ts, correlation_id, acquired_at, expires_at FROM locks"


def _entry_row(entry: AuditEntry) -> tuple[Any, ...]:
    return tuple(getattr(entry, name) for name in ENTRY_COLUMNS)


def _followup_value(value: object) -> object:
    return int(value) if isinstance(value, bool) else value


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
