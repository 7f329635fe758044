"""Following accepted reboots until the instance is idle again: one list call per interval for all of them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, as_completed
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Protocol

from bot.core.listing import Lister
from bot.core.outbox import Outbox, OutboxMessage
from bot.core.store import FollowUp
from bot.dbss.errors import DbssApiError, DbssError, DbssNotSent
from bot.dbss.models import HEALTHY_STATUS, IDLE_TASK, Instance
from bot.metrics import Metrics

log = logging.getLogger(__name__)

# DBSS flips the task to "rebooting" a moment after accepting. If we never see it busy, we still call the
# reboot finished after this many idle polls, rather than declare victory on the very first one.
SETTLE_POLLS = 3
if TYPE_CHECKING:
    from bot.core.fleet import Fleet

# An instance missing from one list answer may be a glitch of that answer: it is called gone only when this many
# good answers in a row lack it.
GONE_AFTER_LISTS = 2


def _no_longer_served(key: str | None) -> list[Instance]:
    raise DbssNotSent(f"{key} is no longer among DBSS_TARGETS")


class NoAnswerYet(DbssError):
    """A list call still in flight when the next tick is due."""


def _no_answer_yet(label: str) -> list[Instance]:
    raise NoAnswerYet(f"{label} has not answered yet")


@dataclass(frozen=True, slots=True)
class Progress:
    elapsed: float
    instance: Instance | None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Ending:
    kind: Literal["healthy", "unhealthy", "timeout", "gone"]
    elapsed: float
    instance: Instance | None
    stale: bool = False  # `instance` is the state last seen: the list could not be read at the end
    seen_busy: bool = True  # False: no list ever showed the instance at work (idle after the settling polls)


class FollowUpNotifier(Protocol):
    """Where follow-ups are reported (the card's thread in Slack)."""

    def progress(self, followup: FollowUp, progress: Progress) -> str | None:
        """Show progress; returns the ID of the progress message to update next time."""

    def finished(self, followup: FollowUp, ending: Ending) -> Sequence[OutboxMessage]:
        """Report the end; returns messages to write together with the audit entry (or nothing)."""


class FollowUpStore(Protocol):
    """What the follower needs from the state store (the console gives it a store of its own reboots only)."""

    def active_followups(self) -> list[FollowUp]: ...

    def update_followups(self, updates: list[tuple[str, dict[str, Any]]]) -> None: ...

    def finish_followup(self, correlation_id: str, outcome: str) -> bool: ...

    def record(self, event: str, *, announce: Sequence[OutboxMessage] = (), **fields: Any) -> None: ...

    def release_lock(self, instance_id: str, correlation_id: str) -> None: ...


class Follower:
    """One thread that polls the instance list once per interval and moves every follow-up along."""

    def __init__(
        self,
        *,
        dbss: Lister,
        store: FollowUpStore,
        notifier: FollowUpNotifier,
        interval_seconds: float,
        progress_every_seconds: float = 60.0,
        progress_budget: int = 10,
        on_finished: Callable[[FollowUp, Ending], None] | None = None,
        outbox: Outbox | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        gate: Callable[[], None] | None = None,
    ) -> None:
        self._dbss = dbss
        self._gate = gate  # waited on before each tick: a quiet moment between acks (bounded by the gate itself)
        self._store = store
        self._notifier = notifier
        self._interval = interval_seconds
        self._progress_every = progress_every_seconds
        self._progress_budget = progress_budget
        self._on_finished = on_finished
        self._outbox = outbox
        self._clock = clock
        self._missing: dict[str, int] = {}  # good list answers in a row without the instance, by follow-up
        # Follow-ups whose progress message last said their list could not be read: a change either way is news.
        self._said_unreadable: set[str] = set()
        self._pending: dict[str | None, Future[list[Instance]]] = {}  # lists in flight, by target
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._metrics = metrics or Metrics()
        self.ticks = 0
        self.active = 0  # follow-ups in hand at the last tick
        # When the loop last came round, work or not (monotonic): a readiness check tells a stuck loop by it.
        self.last_loop_at = time.monotonic()

    def start(self) -> None:
        """Start following, including follow-ups left in the store by an earlier run."""
        self._thread = threading.Thread(target=self._run, name="dbss-follower", daemon=True)
        self.last_loop_at = time.monotonic()
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling; unfinished follow-ups stay in the store for the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        # Fixed rate: a tick starts every interval, however long the list call took (never two at once).
        next_tick = time.monotonic() + self._interval
        while not self._stop.wait(max(0.0, next_tick - time.monotonic())):
            next_tick = max(next_tick + self._interval, time.monotonic())
            try:
                if self._gate is not None:
                    self._gate()
                self.tick()
            except Exception:
                log.exception("follow-up tick failed")
            self.last_loop_at = time.monotonic()

    def tick(self) -> None:
        """One poll for every active follow-up: one list call per target, however many follow-ups there are.

        Each target's follow-ups move on as soon as that target's list answers: a region that is down or slow
        holds up only its own (whose progress says it cannot be read), never another region's."""
        active = self._store.active_followups()
        self.active = len(active)
        if not active:
            return
        self.ticks += 1
        budget = [self._progress_budget]
        for followups, answer in self._lists(active):
            try:
                listed = answer()
            except DbssError as err:
                self._move(followups, None, self._unreadable(followups[0].target, err), budget)
                continue
            instances = {i.id: i for i in listed}
            unread: dict[str, DbssError] = getattr(listed, "unreadable", {})
            if unread:  # every target's list, some unreadable: an instance not found may be in one of those
                lost = [f for f in followups if f.instance_id not in instances]
                followups = [f for f in followups if f.instance_id in instances]
                self._move(lost, None, f"{', '.join(unread)} cannot be read right now", budget)
            self._move(followups, instances, None, budget)

    def _lists(self, active: list[FollowUp]) -> Iterator[tuple[list[FollowUp], Callable[[], list[Instance]]]]:
        """Follow-ups grouped by target, each group with its list, in the order the lists arrive.

        A tick waits for the lists at most until the next tick is due. A list still in flight then (a region
        that does not answer) is kept, not asked again: its answer, or its error, moves that region's follow-ups
        at the first tick after it arrives, and meanwhile the other regions' follow-ups go on as usual."""
        if getattr(self._dbss, "member", None) is None:  # one client (the console's tests): one list for all
            yield active, self._dbss.list_instances
            return
        groups: dict[str | None, list[FollowUp]] = {}
        for f in active:
            groups.setdefault(f.target, []).append(f)
        fleet: Fleet = self._dbss  # type: ignore[assignment]
        for key in [k for k in self._pending if k not in groups]:  # its follow-ups ended: an old answer is no use
            del self._pending[key]
        futures: dict[Future[list[Instance]], list[str | None]] = {}  # two keys may share one call in flight
        for key in groups:
            future = self._pending.get(key)
            if future is None:
                member = fleet.member(key)
                if member is not None:
                    future = member.listing.fetch()
                elif key is None:  # written before the bot served several targets: look in every list
                    future = fleet.fetch()
                else:  # a target no longer configured: followed until its deadline, said in its progress
                    yield groups[key], partial(_no_longer_served, key)
                    continue
                self._pending[key] = future
            futures.setdefault(future, []).append(key)
        try:
            # Until the next tick is due; at least 0.2 s, so that a very short interval does not make every
            # list "not answered yet".
            for future in as_completed(futures, timeout=max(self._interval * 0.9, 0.2)):
                for key in futures[future]:
                    del self._pending[key]
                    yield groups[key], future.result
        except TimeoutError:
            # Still no answer: their progress says so (and their deadlines still apply); the call is kept.
            for future, keys in futures.items():
                if not future.done():
                    for key in keys:
                        yield groups[key], partial(_no_answer_yet, fleet.label(key) or str(key))

    def _unreadable(self, key: str | None, err: DbssError) -> str:
        label = getattr(self._dbss, "label", lambda _: None)(key)
        where = f"{label} cannot be read right now" if label else "the instance list cannot be read right now"
        if isinstance(err, DbssApiError):
            return f"{where}: HTTP {err.status_code} {err.error_code or ''}".strip()
        if isinstance(err, NoAnswerYet):
            return f"{where}: no answer yet"
        return f"{where} ({type(err).__name__}: {str(err)[:120]})"

    def _move(
        self, active: list[FollowUp], instances: dict[str, Instance] | None, note: str | None, budget: list[int]
    ) -> None:
        """Advance these follow-ups on one list answer (or its failure) and store their progress."""
        now = self._clock()
        unreadable = instances is None
        updates: dict[str, dict[str, object]] = {}
        wanted: list[tuple[int, float, FollowUp, Progress, tuple[str | None, str | None]]] = []
        for followup in active:
            try:
                advanced = self._advance(followup, instances, note, now)
            except Exception:
                log.exception("follow-up failed", extra={"correlation_id": followup.correlation_id})
                continue
            if advanced is None:
                continue
            changes, priority, progress, state = advanced
            updates[followup.correlation_id] = changes
            if priority is not None:
                wanted.append((priority, followup.last_update_at or 0.0, followup, progress, state))
        # Progress messages are a courtesy, and Slack rate-limits chat.update (about 50 a minute): a few per
        # tick, first messages first, then state changes, then the oldest elapsed-time refresh.
        wanted.sort(key=lambda w: (w[0], w[1]))
        for _, _, followup, progress, state in wanted[: max(budget[0], 0)]:
            budget[0] -= 1
            try:
                ts = self._notifier.progress(followup, progress)
            except Exception:
                log.exception("follow-up progress failed", extra={"correlation_id": followup.correlation_id})
                continue
            updates[followup.correlation_id].update(
                progress_ts=ts or followup.progress_ts, last_update_at=now, last_status=state[0], last_task=state[1]
            )
            if unreadable:
                self._said_unreadable.add(followup.correlation_id)
            else:
                self._said_unreadable.discard(followup.correlation_id)
        self._store.update_followups(list(updates.items()))

    def _advance(
        self, f: FollowUp, instances: dict[str, Instance] | None, note: str | None, now: float
    ) -> tuple[dict[str, object], int | None, Progress, tuple[str | None, str | None]] | None:
        """Move one follow-up along: None when it has ended, else the changes to store and whether (and how
        urgently: 0 first message, 1 state change, 2 refresh) its progress message should be updated."""
        elapsed = now - f.started_at
        instance = instances.get(f.instance_id) if instances is not None else None
        polls = f.polls + 1
        seen_busy = f.seen_busy or (instance is not None and instance.task != IDLE_TASK)
        if instances is not None and instance is None:
            missing = self._missing.get(f.correlation_id, 0) + 1
            self._missing[f.correlation_id] = missing
            if missing >= GONE_AFTER_LISTS:
                self._finish(f, Ending("gone", elapsed, None))
                return None
            note = "not in the latest instance list; checking again"
        elif instances is not None:
            self._missing.pop(f.correlation_id, None)
        if instance is not None and instance.task == IDLE_TASK and (seen_busy or polls >= SETTLE_POLLS):
            kind: Literal["healthy", "unhealthy"] = "healthy" if instance.status == HEALTHY_STATUS else "unhealthy"
            self._finish(f, Ending(kind, elapsed, instance, seen_busy=seen_busy))
            return None
        if now >= f.deadline:
            if instance is None and instances is None and f.last_status is not None:  # no list now: the last seen
                last = Instance(f.instance_id, "", f.last_status, f.last_task or "UNKNOWN")
                self._finish(f, Ending("timeout", elapsed, last, stale=True))
                return None
            self._finish(f, Ending("timeout", elapsed, instance))
            return None
        changes: dict[str, object] = {"polls": polls, "seen_busy": seen_busy}
        state = (instance.status, instance.task) if instance else (f.last_status, f.last_task)
        priority: int | None = None
        if f.progress_ts is None:
            priority = 0
        elif state != (f.last_status, f.last_task) or (instances is None) != (
            f.correlation_id in self._said_unreadable
        ):
            priority = 1
        elif f.last_update_at is None or now - f.last_update_at >= self._progress_every:
            priority = 2
        return changes, priority, Progress(elapsed, instance, note), state

    def _finish(self, f: FollowUp, ending: Ending) -> None:
        """Claim the ending (once, across replicas), write its messages with its audit entry, release the lock.

        Each write that fails after the claim is retried through the outbox: the ending always reaches the thread
        and the lock is always released."""
        if not self._store.finish_followup(f.correlation_id, ending.kind):
            return
        self._missing.pop(f.correlation_id, None)
        self._said_unreadable.discard(f.correlation_id)
        self._metrics.followup_ended(ending.kind)
        self.active -= 1
        said = list(self._notifier.finished(f, ending))
        record = partial(
            self._store.record,
            "followup_done",
            correlation_id=f.correlation_id,
            user_id=f.requester,
            instance_id=f.instance_id,
            channel=f.channel,
            thread_ts=f.thread_ts,
            outcome=ending.kind,
            detail=f"after {ending.elapsed:.0f}s"
            + (f", {ending.instance.status}/{ending.instance.task}" if ending.instance else ""),
        )
        release = partial(self._store.release_lock, f.instance_id, f.correlation_id)
        if self._outbox is None:
            self._store.release_lock(f.instance_id, f.correlation_id)
            record(announce=said)
        else:
            try:
                record(announce=said)
                self._outbox.wake()  # written with the audit entry, not through put: the deliverer must look now
            except Exception:
                log.exception("could not record the end of a follow-up; telling people first, recording later")
                self._outbox.put(said)
                self._outbox.later(f"record the end of {f.correlation_id}", record)
            self._outbox.attempt(f"release the lock of {f.correlation_id}", release)
        log.info(
            "follow-up done",
            extra={"correlation_id": f.correlation_id, "instance_id": f.instance_id, "outcome": ending.kind},
        )
        if self._on_finished is not None:
            self._on_finished(f, ending)
