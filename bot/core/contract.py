"""The state store contract: the small primitives every backend provides, and the decisions written once above them.

Three backends fill it in: SQLite (bot/core/store.py, one replica), PostgreSQL (bot/core/postgres_state.py,
several replicas, durable) and Redis (bot/core/redis_state.py, several replicas, fast). The decisions that used to
be copied into each (which result starts a cooldown, which reboot start-up recovery must report, how long each kind
of state is kept) live here, so a backend only says how to store and find things, never what they mean.

Every read a request or recovery makes is O(1) or O(log n) in the history: the last reboot of each instance is a
record of its own, written in the same step as the result that sets it; reboots whose outcome no person has been
told yet are a set of their own, emptied as they are told. Nothing walks the audit trail but the export.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.core.outbox import OutboxMessage, State


class StateUnavailable(Exception):
    """The state store cannot be read or written (locked, read-only, disk full, Redis or PostgreSQL down).

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


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the audit trail. `replica`: the replica that wrote it, when the trail is shared."""

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


@dataclass(frozen=True, slots=True)
class StoreSize:
    """How much state a store holds, read in constant time (for `check`)."""

    backend: str
    audit_entries: int | None
    oldest_entry: float | None
    pending_outbox: int
    notes: tuple[str, ...] = ()


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
FOLLOWUP_UPDATABLE = frozenset({"progress_ts", "seen_busy", "polls", "last_status", "last_task", "last_update_at"})

# --- how long each kind of state is kept --------------------------------------------------------------------
# A used confirmation is refused by its own signed expiry (BOT_CONFIRM_TTL_SECONDS <= 3600) once that has passed;
# the claim is kept past it by twice the clock skew allowed between replicas, then deleted.
CLOCK_SKEW_SECONDS = 300
USED_CONFIRMATION_SECONDS = 3600 + 2 * CLOCK_SKEW_SECONDS
# A delivered message is kept while a duplicate of it could still be written and must be recognised: recovery
# re-announces an outcome under the same key, and a card's updates address the card's anchor by key, for as long as
# a follow-up can run (BOT_POLL_TIMEOUT_SECONDS) and a card can wait. A week covers both with room to spare.
OUTBOX_SECONDS = 7 * 24 * 3600
# Start-up recovery looks this far back (as long as the outbox remembers that an outcome was told).
RECOVERY_WINDOW_SECONDS = OUTBOX_SECONDS
# Another replica's reboot with no result this old is orphaned (that replica died and did not come back): far
# longer than any DBSS call can be in flight (DBSS_TIMEOUT_SECONDS <= 120 s a request, an IAM login at most first).
ORPHAN_SECONDS = 15 * 60
RECOVERY_CLAIM_SECONDS = 10 * 60
# Audit entries older than BOT_AUDIT_RETENTION_DAYS are trimmed in batches of this many, one transaction each.
TRIM_BATCH = 1000

# --- the decisions -------------------------------------------------------------------------------------------


def starts_cooldown(event: str, outcome: str | None) -> bool:
    """A reboot result DBSS accepted, or may have (outcome unknown): the instance's last reboot."""
    return event == "reboot_result" and outcome in ("accepted", "unknown")


def opens_recovery(event: str) -> bool:
    """A confirmed click (DBSS not called yet), an intent before the DBSS call, or a result: until its outcome is
    told, a restart must tell it. Each replaces the one before (confirmed, then intent, then result)."""
    return event in ("confirmed", "reboot_intent", "reboot_result")


def settles_recovery(event: str) -> bool:
    """The outcome of that reboot reached a person (through the thread, privately, or as undeliverable)."""
    return event == "outcome_reported"


def recoverable(entry: AuditEntry, *, me: str | None, now: float) -> bool:
    """Whether this process reports an unsettled reboot at start-up: its own at once (an earlier start with the same
    name), another replica's once it is ORPHAN_SECONDS old (before then that replica's call may be in flight), and
    nothing older than the recovery window (the outbox no longer remembers what was told)."""
    if now - entry.at > RECOVERY_WINDOW_SECONDS:
        return False
    return entry.replica is None or entry.replica == me or now - entry.at >= ORPHAN_SECONDS


def outcome_key(correlation_id: str | None) -> str:
    """The outbox key of a reboot's outcome message: once it is written, the deliverer tells it."""
    return f"{correlation_id}:outcome"


def check_followup_updates(updates: list[tuple[str, dict[str, Any]]]) -> None:
    """Only a follow-up's progress fields may change (every store checks the same way)."""
    for _, fields in updates:
        if not fields or set(fields) - FOLLOWUP_UPDATABLE:
            raise ValueError(f"cannot update follow-up fields {sorted(set(fields) - FOLLOWUP_UPDATABLE)}")


def check_audit_fields(fields: dict[str, Any]) -> None:
    unknown = set(fields) - set(AUDIT_FIELDS)
    if unknown:
        raise ValueError(f"unknown audit fields: {sorted(unknown)}")


# --- the contract --------------------------------------------------------------------------------------------


class Store(Protocol):
    """What the bot asks of its state store. Each call either does all it says or raises StateUnavailable."""

    backend: str

    # Keys and liveness.
    def confirmation_key(self) -> bytes:
        """The key that signs confirmation tokens: made once when the store is first used, the same ever after."""
        ...

    def generation(self) -> str:
        """A random ID written once when the store is initialised: an emptied store gets a new one."""
        ...

    def heartbeat(self) -> None:
        """A small real write, for readiness: it fails when other writes would."""
        ...

    def failed_recently(self, seconds: float = 2.0) -> bool: ...

    def close(self) -> None: ...

    # Single-use claims and per-instance locks.
    def claim_confirmation(self, nonce: str, *, instance_id: str, user_id: str, decision: str) -> bool:
        """True the first time a nonce is claimed, ever (within USED_CONFIRMATION_SECONDS); False after."""
        ...

    def acquire_lock(
        self,
        instance_id: str,
        *,
        owner: str,
        channel: str,
        thread_ts: str | None,
        correlation_id: str,
        ttl_seconds: float,
    ) -> tuple[bool, Lock]: ...

    def current_lock(self, instance_id: str) -> Lock | None: ...

    def release_lock(self, instance_id: str, correlation_id: str) -> None: ...

    def extend_lock(self, instance_id: str, correlation_id: str, *, until: float) -> None: ...

    # The audit trail, the last reboot of each instance, and what recovery must report.
    def record(self, event: str, *, announce: Sequence[OutboxMessage] = (), **fields: Any) -> None:
        """Append an entry, write the messages announcing it, the instance's last reboot (starts_cooldown) and the
        set of unsettled reboots (opens_recovery / settles_recovery): all in one step."""
        ...

    def last_reboot(self, instance_id: str) -> AuditEntry | None: ...

    def reboots(self, *, instance_id: str | None = None, limit: int = 10) -> list[AuditEntry]: ...

    def followup_outcome(self, correlation_id: str) -> str | None: ...

    def interrupted(self) -> list[AuditEntry]: ...

    def audit(self, *, instance_id: str | None = None, limit: int = 1000) -> list[AuditEntry]: ...

    def entries(self, *, since: float | None = None, instance_id: str | None = None) -> Iterator[AuditEntry]: ...

    # Follow-ups.
    def add_followup(self, followup: FollowUp) -> None: ...

    def active_followups(self) -> list[FollowUp]: ...

    def update_followups(self, updates: list[tuple[str, dict[str, Any]]]) -> None: ...

    def finish_followup(self, correlation_id: str, outcome: str) -> bool: ...

    # The outbox.
    def enqueue(self, messages: Sequence[OutboxMessage]) -> None: ...

    def outbox_due(self, now: float, limit: int) -> list[OutboxMessage]: ...

    def outbox_get(self, key: str) -> OutboxMessage | None: ...

    def outbox_done(self, message: OutboxMessage, *, state: State, ts: str | None, detail: str | None) -> bool: ...

    def outbox_retry(self, message: OutboxMessage, *, not_before: float, uncertain: bool, detail: str) -> None: ...

    def outbox_release(self, message: OutboxMessage) -> None: ...

    def outbox_backlog(self, now: float) -> tuple[int, float]: ...

    # Retention and size.
    def trim(self, now: float, *, audit_retention_days: int, batch: int = TRIM_BATCH) -> int:
        """One batch of retention (expired claims, old delivered messages, audit entries past the retention):
        the number of rows deleted, 0 when nothing is left to delete."""
        ...

    def size(self) -> StoreSize: ...
