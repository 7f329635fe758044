"""The outbox: every message a person must see is written to the state store before it is sent.

One deliverer (bot/slack/delivery.py) sends what is written here, in order within each thread, and marks it
done. When the store itself fails, messages wait in memory and are delivered from there, and the store writes
that failed are retried until they land: a person is told what DBSS answered even while the store is down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

Kind = Literal["post", "update", "anchor", "respond"]
State = Literal["pending", "sent", "failed"]


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One message to deliver, and how far its delivery has come.

    - post: chat.postMessage in `channel` (in the thread `thread_ts`, when set).
    - update: chat.update of an earlier message: the one whose key is `target`, or the message `ts`.
    - anchor: no call at all; it names a message posted outside the outbox (the card) so that updates can
      target it by key, and keeps that message's blocks for them.
    - respond: an ephemeral answer through a response_url (`target`), where a click is answered.

    Messages of one group (a thread, or a person for private answers) go out in the order they were written.
    `must_see`: if Slack refuses it for good, `recipient` is told privately instead, and the audit trail says how
    the message reached a person. `key` is unique: writing a key twice keeps the first.
    """

    key: str
    kind: Kind
    channel: str
    correlation_id: str | None = None
    thread_ts: str | None = None
    text: str = ""
    blocks: list[dict[str, Any]] | None = None
    target: str | None = None
    ts: str | None = None
    broadcast: bool = False
    must_see: bool = False
    recipient: str | None = None
    # Delivery state, kept by the store.
    id: int = 0
    version: int = 0
    state: State = "pending"
    attempts: int = 0
    not_before: float = 0.0
    uncertain: bool = False  # a post that may have reached Slack: look for it before posting again
    detail: str | None = None
    created_at: float = 0.0

    @property
    def group(self) -> str:
        if self.kind == "respond":
            return f"respond:{self.recipient or self.key}"
        return f"{self.channel}/{self.thread_ts or ''}"


class OutboxStore(Protocol):
    """What the outbox needs from the state store (SQLite, or Redis for replicas)."""

    def enqueue(self, messages: Sequence[OutboxMessage]) -> None: ...

    def outbox_due(self, now: float, limit: int) -> list[OutboxMessage]: ...

    def outbox_get(self, key: str) -> OutboxMessage | None: ...

    def outbox_done(self, message: OutboxMessage, *, state: State, ts: str | None, detail: str | None) -> bool: ...

    def outbox_retry(self, message: OutboxMessage, *, not_before: float, uncertain: bool, detail: str) -> None: ...

    def outbox_backlog(self, now: float) -> tuple[int, float]: ...

    def failed_recently(self) -> bool: ...

    def outbox_release(self, message: OutboxMessage) -> None: ...

    def record(self, event: str, **fields: Any) -> None: ...


@dataclass
class _Deferred:
    what: str
    write: Callable[[], object]
    since: float = field(default_factory=time.time)


class Outbox:
    """Writes messages to the store, or keeps them in memory while the store fails; retries deferred writes.

    `put` never raises: a message that must reach a person is never lost to a store error.
    """

    def __init__(self, store: OutboxStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._memory: deque[OutboxMessage] = deque()  # written while the store failed, oldest first
        self._memory_ids = -1
        self._deferred: deque[_Deferred] = deque()
        # Delivery marks the store could not take (sent, failed, retry later), by message ID: until they land,
        # the store's copy is treated as marked, so a message already sent is never sent again.
        self._marks: dict[int, dict[str, Any]] = {}
        self._wake = threading.Event()

    # --- writing -----------------------------------------------------------------------------------------

    def put(self, messages: Iterable[OutboxMessage]) -> None:
        batch = [replace(m, created_at=m.created_at or self._clock()) for m in messages]
        if not batch:
            return
        with self._lock:
            in_memory = bool(self._memory)
        # While older messages wait in memory, newer ones queue behind them there; and a store that failed a
        # moment ago is not made to fail again (a locked file costs its whole busy timeout).
        if not in_memory and not self.store.failed_recently():
            try:
                self.store.enqueue(batch)
            except Exception:
                log.exception("state store unavailable: messages kept in memory until it is back")
            else:
                self._wake.set()
                return
        with self._lock:
            for m in batch:
                self._memory.append(replace(m, id=self._memory_ids))
                self._memory_ids -= 1
        self._wake.set()

    def later(self, what: str, write: Callable[[], object]) -> None:
        """A store write that failed and must still happen (a result to record, a lock to release)."""
        log.warning("state store write deferred until the store is back: %s", what)
        with self._lock:
            self._deferred.append(_Deferred(what, write))
        self._wake.set()

    def attempt(self, what: str, write: Callable[[], object]) -> bool:
        """Run a store write now; if it fails, retry it later. True when it ran now."""
        try:
            write()
        except Exception:
            log.exception("store write failed: %s", what)
            self.later(what, write)
            return False
        return True

    def get(self, key: str) -> OutboxMessage | None:
        """The message with this key (None if there is none). Raises if the store cannot be read: a caller must
        not mistake "cannot tell" for "never written"."""
        with self._lock:
            for m in self._memory:
                if m.key == key:
                    return m
        found = self.store.outbox_get(key)
        return self._marked(found) if found is not None else None

    def _marked(self, m: OutboxMessage) -> OutboxMessage:
        with self._lock:
            mark = self._marks.get(m.id)
        return replace(m, **mark) if mark else m

    # --- for the deliverer --------------------------------------------------------------------------------

    def wait(self, timeout: float) -> None:
        """Sleep until something is written (or `timeout`); a write during the last round wakes at once."""
        self._wake.wait(timeout)

    def wake(self) -> None:
        """Something was written to the store directly (with an audit entry), or the deliverer is stopping: the
        deliverer's next round starts now, not at its next poll."""
        self._wake.set()

    def begin_round(self) -> None:
        self._wake.clear()

    def catch_up(self) -> None:
        """Land the delivery marks, move messages kept in memory into the store, then run each deferred write."""
        with self._lock:
            marks = list(self._marks.items())
        for message_id, mark in marks:
            try:
                if mark.get("state", "pending") == "pending":
                    self.store.outbox_retry(
                        replace(_stub(message_id), version=mark["version"]),
                        not_before=mark["not_before"],
                        uncertain=mark["uncertain"],
                        detail=mark["detail"],
                    )
                else:
                    self.store.outbox_done(
                        replace(_stub(message_id), version=mark["version"]),
                        state=mark["state"],
                        ts=mark.get("ts"),
                        detail=mark.get("detail"),
                    )
            except Exception:
                log.debug("state store still unavailable; %d delivery marks wait", len(marks))
                return
            with self._lock:
                if self._marks.get(message_id) is mark:
                    del self._marks[message_id]
        with self._lock:
            waiting = list(self._memory)
        if waiting:
            try:
                self.store.enqueue([replace(m, id=0) for m in waiting])
            except Exception:
                log.debug("state store still unavailable; %d messages stay in memory", len(waiting))
                return
            with self._lock:
                for _ in waiting:
                    self._memory.popleft()
        with self._lock:
            deferred = list(self._deferred)
        for item in deferred:  # each on its own: one that keeps failing blocks none of the others
            try:
                item.write()
            except Exception:
                log.debug("deferred write still failing: %s", item.what)
                continue
            log.info("deferred write done: %s", item.what)
            with self._lock:
                self._deferred.remove(item)

    def leftovers(self) -> tuple[list[OutboxMessage], list[str]]:
        """What the store never took (at shutdown): messages still in memory, and deferred writes."""
        with self._lock:
            return [m for m in self._memory if m.state == "pending"], [d.what for d in self._deferred]

    def due(self, limit: int = 50) -> list[OutboxMessage]:
        """The next message of each group that may be sent now: from memory while the store fails."""
        now = self._clock()
        with self._lock:
            if self._memory:
                heads: dict[str, OutboxMessage] = {}
                for m in self._memory:
                    if m.state == "pending":
                        heads.setdefault(m.group, m)
                return [m for m in heads.values() if m.not_before <= now][:limit]
        try:
            stored = self.store.outbox_due(now, limit)
        except Exception:
            log.exception("could not read the outbox; trying again")
            return []
        with self._lock:  # a message whose mark has not landed waits (its group behind it): never sent twice
            marks = dict(self._marks)
        ready = [
            m
            for m in stored
            if m.id not in marks
            or (marks[m.id].get("state", "pending") == "pending" and marks[m.id]["not_before"] <= now)
        ]
        return [self._marked(m) for m in ready]

    def done(self, message: OutboxMessage, *, state: State, ts: str | None = None, detail: str | None = None) -> bool:
        """Mark a message sent or failed. If the store cannot take the mark, it is kept here until it can."""
        if message.id < 0:
            return self._in_memory(message, state=state, ts=ts, detail=detail)
        try:
            return self.store.outbox_done(message, state=state, ts=ts, detail=detail)
        except Exception:
            log.exception(
                "could not mark a message %s; kept until the store is back", state, extra={"key": message.key}
            )
            with self._lock:
                self._marks[message.id] = {"state": state, "ts": ts, "detail": detail, "version": message.version}
            return True

    def retry(self, message: OutboxMessage, *, not_before: float, uncertain: bool, detail: str) -> None:
        if message.id < 0:
            self._in_memory(message, state="pending", not_before=not_before, uncertain=uncertain, detail=detail)
            return
        try:
            self.store.outbox_retry(message, not_before=not_before, uncertain=uncertain, detail=detail)
        except Exception:
            log.exception("could not note a retry; kept until the store is back", extra={"key": message.key})
            with self._lock:
                self._marks[message.id] = {
                    "not_before": not_before,
                    "uncertain": uncertain,
                    "detail": detail,
                    "version": message.version,
                }

    def release(self, message: OutboxMessage) -> None:
        """The message is handled: its thread's delivery lease is free for whichever replica comes next."""
        if message.id > 0:
            try:
                self.store.outbox_release(message)
            except Exception:
                log.debug("could not release a delivery lease; it lapses by itself", exc_info=True)

    def record(self, event: str, **fields: Any) -> None:
        """An audit entry about delivery; deferred if the store fails."""
        self.attempt(f"audit {event}", lambda: self.store.record(event, **fields))

    def backlog(self) -> tuple[int, float]:
        """(messages waiting, age in seconds of the oldest), for readiness and metrics."""
        now = self._clock()
        with self._lock:
            memory = [m for m in self._memory if m.state == "pending"]
            deferred = len(self._deferred)
            oldest = min((m.created_at for m in memory), default=now)
            if self._deferred:
                oldest = min(oldest, self._deferred[0].since)
        try:
            count, age = self.store.outbox_backlog(now)
        except Exception:
            count, age = 0, 0.0
        return count + len(memory) + deferred, max(age, now - oldest)

    def _in_memory(self, message: OutboxMessage, **changes: Any) -> bool:
        with self._lock:
            for i, m in enumerate(self._memory):
                if m.id == message.id:
                    self._memory[i] = replace(m, attempts=m.attempts + 1, **changes)
                    return True
        return False


def _stub(message_id: int) -> OutboxMessage:
    """Enough of a message to address its store row by ID (for marks that land late)."""
    return OutboxMessage(key="", kind="post", channel="", id=message_id)
